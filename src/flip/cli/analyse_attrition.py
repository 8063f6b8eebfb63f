"""`flip analyse attrition`: a cohort's counts after each step, per site store and combined."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.errors import one_line_errors


def _stores(values: list[str]) -> dict[str, str]:
    stores: dict[str, str] = {}
    for value in values:
        name, sep, location = value.partition("=")
        if not sep or "://" in name:
            name, location = value, value
        if name in stores:
            raise typer.BadParameter(f"site {name} is given twice", param_hint="--store")
        stores[name.strip()] = location.strip()
    return stores


def attrition(
    cohort: Annotated[
        Path, typer.Argument(help="A cohort: Circe JSON from ATLAS, or FLIP's JSON.", exists=True)
    ],
    store: Annotated[
        list[str],
        typer.Option(help="A site's store as NAME=PATH or URL (or just PATH); repeat for each."),
    ],
    min_cell: Annotated[
        int, typer.Option(min=1, help="Counts from 1 to this minus one are suppressed.")
    ] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
) -> None:
    """A cohort's attrition on site stores: persons left after each step, per site and combined.

    The steps are the primary criteria, then each inclusion rule in turn; small counts are
    shown as "<10" and small drops withheld (docs/cohorts.md).

    Example: flip analyse attrition t2d.json --store leeds=leeds.duckdb --store york=york.duckdb
    """
    from flip.cli.site import _existing
    from flip.data.cohort.circe.attrition import site_attrition, step_names
    from flip.data.cohort.circe.definition import load_definition_file
    from flip.data.cohort.circe.export import as_circe
    from flip.stats.attrition import combine_attrition

    with one_line_errors():
        definition = as_circe(load_definition_file(cohort))
        sites = {}
        for name, location in _stores(store).items():
            s = _existing(location)
            try:
                sites[name] = site_attrition(s, definition, min_cell)
            finally:
                s.close()
    result = {
        "cohort": definition.name,
        "min_cell": min_cell,
        "steps": step_names(definition),
        "sites": sites,
        "combined": combine_attrition(sites),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"Attrition: {definition.name} (counts 1-{min_cell - 1} suppressed)")
    table.add_column("step")
    for name in [*sites, "combined"]:
        table.add_column(name, justify="right")
    for i, step in enumerate(result["steps"]):
        row = [str(v[i]) for v in sites.values()]
        table.add_row(step, *row, str(result["combined"][i]))
    Console().print(table)
