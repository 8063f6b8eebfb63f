"""`flip analyse …`: federated analytics in simulation on per-site CSV files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.analyse_attrition import attrition
from flip.cli.analysis import CirceOption, CovariatesOption, OutcomeOption, TimeBinOption
from flip.cli.errors import one_line_errors
from flip.cli.fl import JsonOption, _sites
from flip.cli.hub_session import hub_console
from flip.problems import as_text
from flip.stats.tables import cox_title

app = typer.Typer(
    help="Federated analytics: Table 1, survival, regression on CSV files or site stores; "
    "attrition on stores.",
    no_args_is_help=True,
)
SiteOption = Annotated[list[str], typer.Option(help="A site as NAME=PATH.csv; repeat for each.")]
MinCellOption = Annotated[
    int, typer.Option(min=1, help="Counts from 1 to this minus one are suppressed at each site.")
]


def _split(value: str | None) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()] if value else []


def _finite(value):
    """The value with every NaN or infinity as None: valid JSON (json writes NaN, Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _print_json(result: dict) -> None:
    typer.echo(json.dumps(_finite(result), indent=2, allow_nan=False))


@app.command()
def table1(
    site: SiteOption,
    columns: Annotated[
        str | None, typer.Option(help="Columns, comma-separated (default: all but row ids).")
    ] = None,
    min_cell: MinCellOption = 10,
    as_json: JsonOption = False,
    csv: Annotated[Path | None, typer.Option(help="Also write Table 1 as CSV here.")] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page.")
    ] = None,
) -> None:
    """Counts, mean, SD, median and IQR, missingness per site and combined; SMDs between sites.

    Example: flip analyse table1 --site leeds=leeds.csv --site york=york.csv --columns age,sex,sbp
    """
    from flip.cli.analyse_render import table1_rows, write_csv, write_html
    from flip.data.features.analysis import read_sites
    from flip.data.features.analysis import table1 as run

    with one_line_errors():
        result = run(read_sites(_sites(site)), _split(columns), min_cell)
        if csv:
            write_csv(result, csv)
        if html:
            write_html(result, html)
    if as_json:
        _print_json(result)
        return
    header, rows = table1_rows(as_text(result))
    table = Table(title=f"Table 1 (counts 1-{min_cell - 1} suppressed at each site)")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    hub_console().print(table)


@app.command()
def survival(
    site: SiteOption,
    time: Annotated[str, typer.Option(help="The follow-up time column.")],
    event: Annotated[str, typer.Option(help="The event column: 1/0 (or yes/no).")],
    covariates: Annotated[
        str | None, typer.Option(help="Cox model covariates, comma-separated.")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="A curve per level of this column, log-rank test between them."),
    ] = None,
    time_bin: Annotated[
        float,
        typer.Option(min=1e-9, help="Width of the time grid sites round follow-up up to."),
    ] = 1.0,
    min_cell: MinCellOption = 10,
    as_json: JsonOption = False,
) -> None:
    """Kaplan-Meier per site and combined, log-rank test, Cox model stratified by site.

    The log-rank test compares the sites, or the levels of --group.

    Example: flip analyse survival --site a=site1.csv --site b=site2.csv --time days --event died
    """
    from flip.data.features.analysis import read_sites, survival_analysis

    with one_line_errors():
        result = survival_analysis(
            read_sites(_sites(site)), time, event, _split(covariates), time_bin, min_cell, group
        )
    if as_json:
        _print_json(result)
        return
    result = as_text(result)
    console = hub_console()
    table = Table(title="Kaplan-Meier")
    for name in ("curve", "median", "S at last time", "left out"):
        table.add_column(name, justify="left" if name == "curve" else "right")
    total = sum(result["left_out"].values())
    curves = [("combined", result["km"]["combined"], str(total))]
    curves += [(n, km, str(result["left_out"][n])) for n, km in result["km"]["sites"].items()]
    curves += [(f"{group}={n}", km, "") for n, km in result["km"].get("groups", {}).items()]
    for name, km, left in curves:
        last = f"{km['survival'][-1]:.3f} at {km['times'][-1]:g}" if km["times"] else "withheld"
        table.add_row(name, _num(km["median"]), last, left)
    console.print(table)
    logrank = result["logrank"]
    why = f" ({logrank['reason']})" if logrank.get("reason") else ""
    console.print(f"log-rank test between {logrank['between']}: p = {_num(logrank['p'])}{why}")
    if result["cox"]:
        _print_coefficients(console, result["cox"], cox_title(result["cox"]))


@app.command()
def regression(
    site: SiteOption,
    target: Annotated[str, typer.Option(help="The outcome column.")],
    family: Annotated[str, typer.Option(help="logistic or linear.")] = "logistic",
    positive: Annotated[
        str | None,
        typer.Option(help='logistic: which rows are positive, e.g. "num>0" (unless 2-valued).'),
    ] = None,
    covariates: Annotated[
        str | None, typer.Option(help="Covariates, comma-separated (default: all but ids).")
    ] = None,
    min_cell: MinCellOption = 10,
    as_json: JsonOption = False,
) -> None:
    """Logistic or linear regression by federated Newton/IRLS, with standard errors.

    Example: flip analyse regression --site leeds=leeds.csv --site york=york.csv --target diabetes
    """
    from flip.data.features.analysis import read_sites, regression_analysis

    with one_line_errors():
        result = regression_analysis(
            read_sites(_sites(site)), target, family, _split(covariates) or None, positive, min_cell
        )
    if as_json:
        _print_json(result)
        return
    result = as_text(result)
    console = hub_console()
    _print_coefficients(console, result, f"{family} regression of {target}")
    console.print(f"n = {result['n']}, left out: {sum(result['left_out'].values())}")


@app.command()
def stores(
    kind: Annotated[str, typer.Argument(help="table1, survival or regression.")],
    store: Annotated[
        list[str],
        typer.Option(help="A site's store as NAME=PATH (or a database URL); repeat for each."),
    ],
    cohort: Annotated[
        str, typer.Option(help="The features and outcome: a built-in task's name or a JSON file.")
    ],
    circe: CirceOption = None,
    covariates: CovariatesOption = None,
    outcome: OutcomeOption = None,
    time_bin: TimeBinOption = 30.0,
    min_cell: MinCellOption = 10,
    as_json: JsonOption = False,
) -> None:
    """An analysis on sites' stores as enrolled sites run it (`flip analysis submit`).

    Example: flip analyse stores table1 --store a=a.duckdb --cohort mace-5y --circe atlas.json
    """
    from flip.cli.analyse_attrition import _stores
    from flip.cli.analysis import _print_result, build_spec
    from flip.cli.site import _existing
    from flip.data.features.store_analysis import AnalysisSpec
    from flip.data.features.store_simulation import run_on_stores

    with one_line_errors():
        spec = AnalysisSpec.model_validate(
            build_spec(kind, cohort, _split(covariates), outcome, time_bin, [], circe)
        )
        opened = {}
        try:
            for name, location in _stores(store).items():
                opened[name] = _existing(location)
            found = run_on_stores(spec, opened, min_cell)
        finally:
            for s in opened.values():
                s.close()
    if as_json:
        _print_json(found)
        return
    found = as_text(found)
    console = hub_console()
    _print_result(console, kind, found["result"])
    for name, why in found["declined"].items():
        console.print(f"{name} took no part: {why}")


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_coefficients(console: Console, result: dict, title: str) -> None:
    table = Table(title=title)
    for name in ("term", "coef", "se", "p"):
        table.add_column(name, justify="left" if name == "term" else "right")
    for term, coef in result["coef"].items():
        table.add_row(term, _num(coef), _num(result["se"][term]), _num(result["p"][term]))
    console.print(table)


app.command()(attrition)
