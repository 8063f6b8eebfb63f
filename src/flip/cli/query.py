"""`flip query`: ask a project's sites for a cohort count and watch the answers arrive."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flip.cli.hub_session import connected, fail, hub_console, print_json, read_json
from flip.problems import as_text

#: Seconds between the first two reads of a query's answers, and at most.
POLL = 0.5
MAX_POLL = 3.0


def answers_table(query: dict[str, Any]) -> RenderableType:
    """Each site's released count (`<N` when suppressed below its threshold), those still
    pending, and the total when every site released its count; for a Circe query, below it
    the attrition (`attrition_table`). Text from the hub (the query's name, a site's error)
    is shown with control characters written out (`as_text`)."""
    query = as_text(query)
    if not query.get("steps"):
        return _counts_table(query)
    return Group(_counts_table(query), attrition_table(query))


def attrition_table(query: dict[str, Any]) -> Table:
    """A Circe query's persons after each step, per site as released and combined ("N+"
    where a site did not release a step or has not answered)."""
    table = Table(title="Attrition: persons left after each step")
    table.add_column("step")
    names = sorted([*query["results"], *query["pending"]])
    for name in [*names, "combined"]:
        table.add_column(name, justify="right")
    for i, step in enumerate(query["steps"]):
        row = []
        for name in names:
            answer = query["results"].get(name)
            if answer is None:
                row.append(Text("waiting…", style="dim"))
            elif len(answer.get("attrition") or []) != len(query["steps"]):
                row.append(Text("—", style="dim"))
            else:
                row.append(Text(str(answer["attrition"][i])))
        table.add_row(Text(step), *row, Text(str(query["attrition"][i]), style="bold"))
    return table


def _counts_table(query: dict[str, Any]) -> Table:
    table = Table(title=Text(f"Query {query['id']}: {query['name']}"))
    table.add_column("site")
    table.add_column("count", justify="right")
    for name, answer in sorted(query["results"].items()):
        if answer["error"]:
            shown = f"error: {answer['error']}"
        elif answer["suppressed"]:
            shown = f"<{answer['threshold']}"
        else:
            shown = str(answer["count"])
        table.add_row(Text(name), Text(shown))
    for name in query["pending"]:
        table.add_row(Text(name), Text("waiting…", style="dim"))
    if query["total"] is not None:
        table.add_row(Text("total", style="bold"), Text(str(query["total"]), style="bold"))
    elif not query["results"] and not query["pending"]:
        table.add_row(Text("total", style="bold"), "no site was asked")
    elif not query["pending"]:
        table.add_row(Text("total", style="bold"), "withheld (a site suppressed or failed)")
    return table


def query(
    name: Annotated[str | None, typer.Argument(help="A name for the new query.")] = None,
    project: Annotated[int | None, typer.Option(help="The project's id.")] = None,
    definition: Annotated[
        Path | None, typer.Option(help="A cohort definition (JSON; see docs/site-setup.md).")
    ] = None,
    query_id: Annotated[
        int | None, typer.Option("--id", help="Read an existing query instead of asking one.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for every site's answer.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answers.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answers as JSON.")] = False,
) -> None:
    """Ask every site in a project how many patients match a cohort definition.

    The table fills in as sites answer; a count below a site's threshold shows
    as <N, never as 0, and the total appears only once every site released its
    count. Without --wait, prints the query's id: `flip query --id ID` reads it.

    Example: flip query diabetics --project 3 --definition diabetes.json
    """
    with connected() as hub:
        if query_id is None:
            if name is None or project is None or definition is None:
                fail("give NAME, --project and --definition (or --id to read a query)")
            cohort = read_json(definition, "a definition")
            _require_sites(hub, project)
            query_id = hub.create_query(project, name, cohort)
        answers = hub.query(query_id)
        if wait and answers["pending"]:
            answers = _watch(hub, answers, timeout, live=not as_json)
        elif not as_json:
            hub_console().print(answers_table(answers))
    if as_json:
        print_json(answers)
    elif answers["pending"]:
        typer.echo(f"still waiting for {', '.join(answers['pending'])}: flip query --id {query_id}")


def _require_sites(hub, project: int) -> None:
    """Stop before asking a project no site would answer (none invited, or all declined)."""
    states = hub.project(project)["sites"]
    if not any(state in ("invited", "approved") for state in states.values()):
        fail(
            f"project {project} has no invited site to answer a query: "
            f"invite one first (flip project invite {project} SITE)"
        )


def _watch(hub, answers: dict[str, Any], timeout: float, live: bool) -> dict[str, Any]:
    """Read the query until no site is pending or `timeout` passes, redrawing its table
    when `live`; reads back off from POLL to MAX_POLL seconds (each read is audited)."""
    deadline = time.monotonic() + timeout
    shown = Live(answers_table(answers), console=hub_console(), auto_refresh=False)
    pause = POLL
    with shown if live else contextlib.nullcontext():
        while answers["pending"] and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 1.5, MAX_POLL)
            answers = hub.query(answers["id"])
            if live:
                shown.update(answers_table(answers), refresh=True)
    return answers
