"""`flip run …`: start a federated run of an approved task, watch its rounds, stop it, read
its results."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from flip.cli.hub_session import connected, fail, hub_console, print_json
from flip.problems import as_text

app = typer.Typer(
    help="Federated runs at the hub: start, watch rounds arrive, stop, read results.",
    no_args_is_help=True,
)

#: A run's states that it never leaves.
ENDED = ("completed", "failed", "cancelled")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RunArg = Annotated[int, typer.Argument(help="The run's id (`flip run start` prints it).")]


@app.command()
def start(
    project: Annotated[int, typer.Option(help="The project's id.")],
    task: Annotated[str, typer.Option(help="The approved task's hash (`flip task propose`).")],
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 5,
    runtime: Annotated[
        str,
        typer.Option(
            help="deployment (the hub trains on its Flower SuperLink) or simulation "
            "(you train and report rounds yourself; the run is only requested)."
        ),
    ] = "deployment",
    replies: Annotated[
        float, typer.Option(help="Seconds to wait for every invited site to join or refuse.")
    ] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Request a run of an approved task and, once the sites have replied, start it.

    Sites that approved the task join; the others refuse. The run starts with
    those that joined when every invited site has replied (or --replies seconds
    have passed); `flip run watch ID` then shows its rounds.

    Example: flip run start --project 3 --task 5f2c…e1 --rounds 10
    """
    if runtime not in ("deployment", "simulation"):
        fail(f"--runtime {runtime}: choose deployment or simulation")
    with connected() as hub:
        run_id = hub.create_run(project, task, rounds, runtime=runtime)
        state = _replies(hub, project, run_id, replies)
        joined = sorted(n for n, s in state["sites"].items() if s["status"] == "joined")
        if runtime == "deployment":
            if not joined:
                refused = _refusals(as_text(state))
                fail(f"run {run_id}: no site joined ({refused}); it stays requested")
            state = hub.set_run_status(run_id, "running") or hub.run(run_id)
    if as_json:
        print_json(state)
        return
    state = as_text(state)
    typer.echo(f"run {run_id}: {state['status']} with {', '.join(joined) or 'no site yet'}")
    if refused := _refusals(state):
        typer.echo(f"refused: {refused}")
    typer.echo(f"next: flip run watch {run_id}")


def _replies(hub, project: int, run_id: int, wait: float) -> dict[str, Any]:
    """The run once every invited site replied to it, or after `wait` seconds."""
    invited = set(hub.project(project)["sites"])
    deadline = time.monotonic() + wait
    state = hub.run(run_id)
    with hub_console(stderr=True).status(f"run {run_id}: waiting for the sites to join or refuse"):
        while set(state["sites"]) < invited and time.monotonic() < deadline:
            time.sleep(1.0)
            state = hub.run(run_id)
    return state


def _refusals(state: dict[str, Any]) -> str:
    return ", ".join(
        f"{n} ({s['reason'] or 'no reason given'})"
        for n, s in sorted(state["sites"].items())
        if s["status"] != "joined"
    )


def _metrics(values: dict[str, Any]) -> str:
    return "  ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())
    )


@app.command()
def watch(
    run_id: RunArg,
    interval: Annotated[float, typer.Option(help="Seconds between two looks at the run.")] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line: rounds, then the end.")
    ] = False,
) -> None:
    """Print each round's metrics as the hub records them, until the run ends.

    Exits 0 when the run completes, 1 when it failed or was cancelled.

    Example: flip run watch 7
    """
    console = hub_console()
    shown, sites = 0, {}
    with connected() as hub:
        while True:
            state = hub.run(run_id)
            if not as_json:  # a site's metric names and the run's error shown as text
                state = as_text(state)
            for number, metrics in enumerate(state["round_metrics"][shown:], start=shown + 1):
                if as_json:
                    print_json({"round": number, "metrics": metrics})
                else:
                    console.print(f"round {number}/{state['rounds']}  {_metrics(metrics)}")
            shown = len(state["round_metrics"])
            for name, site in sorted(state["sites"].items()):
                if sites.get(name) != site["status"] and not as_json:
                    console.print(f"{name}: {site['status']}", style="dim")
                sites[name] = site["status"]
            if state["status"] in ENDED:
                break
            time.sleep(interval)
    if as_json:
        print_json({"status": state["status"], "results": state["results"]})
    else:
        reason = (state["results"] or {}).get("error")
        console.print(f"run {run_id} {state['status']}" + (f": {reason}" if reason else ""))
    if state["status"] != "completed":
        raise typer.Exit(1)


@app.command()
def stop(run_id: RunArg) -> None:
    """Cancel a run: one training on the SuperLink is stopped there and at the sites.

    Example: flip run stop 7
    """
    with connected() as hub:
        hub.set_run_status(run_id, "cancelled")
    typer.echo(f"run {run_id} cancelled")


@app.command()
def results(run_id: RunArg, as_json: JsonOption = False) -> None:
    """A run's state, each site's test metrics and the model it registered.

    Example: flip run results 7 --json
    """
    with connected() as hub:
        state = hub.run(run_id)
    if as_json:
        print_json(state)
        return
    state = as_text(state)
    console = hub_console()
    console.print(
        f"run {run_id}: {state['status']}, {len(state['round_metrics'])}/{state['rounds']} "
        f"rounds, {state['strategy']}, task {state['task_hash'][:16]}"
    )
    found = state["results"] or {}
    per_site = found.get("per_site", {})
    if per_site:
        names = sorted({k for m in per_site.values() for k in m})
        table = Table(title="Per-site test metrics")
        table.add_column("site")
        for name in names:
            table.add_column(name, justify="right")
        for site, values in sorted(per_site.items()):
            table.add_row(site, *(_cell(values.get(n)) for n in names))
        console.print(table)
    if state["round_metrics"]:
        console.print(f"last round: {_metrics(state['round_metrics'][-1])}")
    if "error" in found:
        console.print(f"error: {found['error']}")
    if "model" in found:
        console.print(f"model: {found['model']} (flip models pull {run_id} --out DIR)")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))
