"""`flip analysis submit|results`: federated analyses through the hub on enrolled sites."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flip.cli.hub_session import connected, fail, hub_console, print_json, read_json
from flip.problems import as_text, first_problem

#: The options an analysis of a cohort takes, on the hub (`flip analysis submit`) or on
#: stores (`flip analyse stores`).
CovariatesOption = Annotated[
    str | None, typer.Option(help="Model covariates (feature names), comma-separated.")
]
OutcomeOption = Annotated[
    str | None, typer.Option(help="Override the cohort's outcome, e.g. time-to-event.")
]
TimeBinOption = Annotated[
    float, typer.Option(min=1e-9, help="survival: days sites round follow-up up to.")
]
CirceOption = Annotated[
    Path | None,
    typer.Option(
        help="A cohort definition (Circe JSON from ATLAS, or FLIP's, exported to Circe): "
        "its persons, from their cohort start date, instead of --cohort's entry event.",
        exists=True,
        dir_okay=False,
    ),
]

app = typer.Typer(
    help="Analyses on a project's enrolled sites: Table 1, survival, regression, harmonisation.",
    no_args_is_help=True,
)

#: Seconds between reads of an analysis while waiting, and at most.
POLL = 0.5
MAX_POLL = 3.0


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _cohort(given: str) -> dict[str, Any]:
    """The cohort a --cohort names: a built-in task's, a task JSON's `data`, or a cohort JSON."""
    from flip.fl.tasks import BUILT_IN

    if given in BUILT_IN:
        return BUILT_IN[given](0).data.model_dump(mode="json")
    path = Path(given)
    if not path.is_file():
        fail(f"{given}: no such file, nor a built-in task ({', '.join(sorted(BUILT_IN))})")
    found = read_json(path, "a cohort")
    return found["data"] if isinstance(found.get("data"), dict) else found


def build_spec(
    kind: str,
    cohort: str | None,
    covariates: list[str],
    outcome: str | None,
    time_bin: float,
    concepts: list[str],
    circe: Path | None = None,
) -> dict[str, Any]:
    """The analysis spec as sites hash it; ValueError naming what is wrong."""
    from pydantic import ValidationError

    from flip.data.cohort.circe.definition import load_definition_file
    from flip.data.cohort.circe.export import as_circe
    from flip.data.features.harmonisation import HarmonisationSpec
    from flip.data.features.store_analysis import AnalysisSpec

    try:
        if kind == "harmonisation":
            if not concepts or circe is not None:
                raise ValueError("harmonisation: give --concepts ID,ID,... (and no --circe)")
            return HarmonisationSpec(concept_ids=[int(c) for c in concepts]).body()
        if cohort is None:
            raise ValueError(f"{kind}: give --cohort (a built-in task's name or a JSON file)")
        data = _cohort(cohort) | ({"outcome": outcome} if outcome else {})
        members = None if circe is None else as_circe(load_definition_file(circe))
        spec = AnalysisSpec.model_validate(
            {
                "kind": kind,
                "data": data,
                "covariates": covariates or None,
                "time_bin": time_bin,
                "cohort": members,
            }
        )
        return spec.body()
    except ValidationError as exc:
        raise ValueError(first_problem(exc)) from None


@app.command()
def submit(
    kind: Annotated[str, typer.Argument(help="table1, survival, regression or harmonisation.")],
    project: Annotated[int, typer.Option(help="The project's id.")],
    cohort: Annotated[
        str | None,
        typer.Option(help="The cohort and its features: a built-in task's name or a JSON file."),
    ] = None,
    covariates: CovariatesOption = None,
    outcome: OutcomeOption = None,
    time_bin: TimeBinOption = 30.0,
    concepts: Annotated[
        str | None, typer.Option(help="harmonisation: the concept set, comma-separated ids.")
    ] = None,
    circe: CirceOption = None,
    timeout: Annotated[
        int,
        typer.Option(
            min=10,
            max=30 * 86400,
            help="Seconds each round waits for the sites (the first includes their admins' "
            "approval); then the hub goes on with those that answered, the others silent.",
        ),
    ] = 86400,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask a project's sites for an analysis; print its id and the hash site admins approve.

    Example: flip analysis submit table1 --project 3 --cohort mace --circe atlas.json
    """
    with connected() as hub:
        spec = build_spec(
            kind, cohort, _split(covariates), outcome, time_bin, _split(concepts), circe
        )
        found = hub.submit_analysis(project, spec, timeout)
    if as_json:
        print_json(found)
        return
    typer.echo(f"analysis {found['id']} ({kind}), hash {found['hash']}")
    typer.echo(
        f"site admins: flip site approve {project} {found['hash']} --analysis "
        f"(or an auto-approve rule with kinds: [analysis:{kind}])"
    )


@app.command()
def results(
    analysis_id: Annotated[int, typer.Argument(help="The analysis's id.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until it completes or fails.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each site's part of an analysis, and the combined result once every site answered.

    Example: flip analysis results 1 --wait
    """
    with connected() as hub:
        found = hub.analysis(analysis_id)
        deadline, pause = time.monotonic() + timeout, POLL
        while wait and found["status"] == "running" and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 1.5, MAX_POLL)
            found = hub.analysis(analysis_id)
    if as_json:
        print_json(found)
        return
    found = as_text(found)
    console = hub_console()
    sites = Table(title=f"Analysis {found['id']} ({found['kind']}): {found['status']}")
    sites.add_column("site")
    sites.add_column("part")
    for name, part in sorted(found["sites"].items()):
        sites.add_row(name, part)
    console.print(sites)
    if found["error"]:
        console.print(f"error: {found['error']}")
    if found["result"] is not None:
        from flip.stats.tables import not_combined_line

        _print_result(console, found["kind"], found["result"])
        if line := not_combined_line(found["result"]):
            console.print(line)


def _print_result(console, kind: str, result: dict[str, Any]) -> None:
    from flip.stats.tables import cox_title, table1_rows

    if kind == "table1":
        header, rows = table1_rows(result)
        table = Table(title="Table 1")
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i < 2 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    elif kind == "harmonisation":
        table = Table(title="Rows mapped to each concept")
        sites = list(result["sites"])
        for name in ("concept", *sites):
            table.add_column(name)
        for cid, by_site in result["concepts"].items():
            table.add_row(cid, *(str(by_site.get(s, 0)) for s in sites))
        console.print(table)
    else:
        model = result if kind == "regression" else result.get("cox")
        if model and "coef" in model:
            table = Table(title=cox_title(model) if kind == "survival" else "Coefficients")
            for name in ("term", "coef", "se", "p"):
                table.add_column(name, justify="left" if name == "term" else "right")
            for term, coef in model["coef"].items():
                table.add_row(
                    term, f"{coef:.4g}", f"{model['se'][term]:.4g}", f"{model['p'][term]:.4g}"
                )
            console.print(table)
        if kind == "survival":
            km = result["km"]["combined"]
            console.print(f"Kaplan-Meier combined median: {km['median']}")
            console.print(f"log-rank between sites: p = {result['logrank']['p']}")
