"""`flip bench …`: figures, never pass/fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flip.cli.errors import one_line_errors

app = typer.Typer(help="Benchmarks: print figures measured in this run.", no_args_is_help=True)


demo_app = typer.Typer(invoke_without_command=True)
app.add_typer(demo_app, name="demo")


@demo_app.callback()
def bench_demo(
    ctx: typer.Context,
    sites: Annotated[int, typer.Option(help="Synthetic hospitals.")] = 3,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 10,
    out: Annotated[Path, typer.Option(help="Scratch folder for the run.")] = Path("demo-out/bench"),
) -> None:
    """Wall time of each phase of `flip demo`, from generating data to writing the report."""
    if ctx.invoked_subcommand is not None:
        return
    from flip.demo.journey import PHASES, DemoError, DemoOptions, run_demo

    console = Console()
    with one_line_errors(DemoError):
        result = run_demo(DemoOptions(sites=sites, rounds=rounds, out=out), Console(quiet=True))
    _phase_table(
        console,
        f"flip demo: wall time per phase ({sites} sites, {rounds} rounds)",
        PHASES,
        result.phases,
    )


@demo_app.command("dermatology")
def bench_demo_dermatology(
    sites: Annotated[int, typer.Option(help="Synthetic hospitals.")] = 4,
    size: Annotated[str, typer.Option(help="World size.")] = "small",
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 20,
    out: Annotated[Path, typer.Option(help="Scratch folder for the run.")] = Path(
        "demo-out/bench-dermatology"
    ),
) -> None:
    """Wall time of each phase of `flip demo dermatology` (the issue's budget for --size small
    on 2 cores is 10 minutes), and the run's bar figures.

    Example: flip bench demo dermatology --size small
    """
    import time

    from flip.demo.dermatology.bar import bar_figures
    from flip.demo.dermatology.journey import (
        PHASES,
        DermatologyDemoError,
        DermatologyOptions,
        run_dermatology,
    )

    console = Console()
    start = time.perf_counter()
    with one_line_errors(DermatologyDemoError):
        result = run_dermatology(
            DermatologyOptions(sites=sites, size=size, out=out, rounds=rounds), Console(quiet=True)
        )
    wall = time.perf_counter() - start
    _phase_table(
        console,
        f"flip demo dermatology: wall time per phase ({sites} sites, --size {size}, "
        f"{rounds} rounds)",
        PHASES,
        result.phases,
    )
    console.print(f"whole run, start-up included: {wall:.1f} s ({wall / 600:.0%} of 10 minutes)")
    for line in bar_figures(result.results):
        console.print(line, highlight=False)


def _phase_table(console: Console, title: str, phases, seconds_of: dict[str, float]) -> None:
    table = Table(title=title)
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    total = sum(seconds_of.values())
    for name in phases:
        seconds = seconds_of.get(name, 0.0)
        table.add_row(name, f"{seconds:.2f}", f"{seconds / total:.0%}")
    table.add_row("[bold]total", f"[bold]{total:.2f}", "100%")
    console.print(table)


@app.command("ingest")
def bench_ingest(
    patients: Annotated[
        int, typer.Option(help="Patients in the FHIR run (CSV and RSS use more).")
    ] = 2000,
    passes: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="Times each timed pair alternates, each side keeping its best (1: a quick look).",
        ),
    ] = 3,
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("demo-out/bench-ingest"),
) -> None:
    """Ingest throughput (FHIR NDJSON vs a bare parse+validate loop; CSV rows/s) and peak RSS.

    Example: flip bench ingest --patients 200
    """
    from flip.bench.ingest import run

    with one_line_errors():
        figures = run(work, patients, passes)
    _print_figures("flip bench ingest (DuckDB on one thread)", figures)


@app.command("fl")
def bench_fl(
    rounds: Annotated[int, typer.Option(help="Rounds in each run.")] = 12,
    sites: Annotated[int, typer.Option(help="Synthetic hospitals.")] = 3,
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("demo-out/bench-fl"),
    deployment: Annotated[
        bool,
        typer.Option(
            help="Also time rounds of FLIP and of a bare Flower app on the same real "
            "SuperLink/SuperNode processes (about 5 minutes)."
        ),
    ] = False,
    secagg: Annotated[
        bool,
        typer.Option(help="Also time FedAvg under SecAgg+ and count its bytes per round."),
    ] = True,
    whole: Annotated[
        bool,
        typer.Option(
            help="Also time the whole `flip fl run` command (4 sites, 30 rounds, start-up "
            "included) against a bare Flower simulation app's, in turn --passes times."
        ),
    ] = True,
    passes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Times FLIP and bare Flower run in turn, who goes first swapped each pass; "
            "each keeps its best.",
        ),
    ] = 2,
    timing: Annotated[
        bool, typer.Option(help="Time FLIP's rounds against bare Flower (--no-timing: skip).")
    ] = True,
    non_iid: Annotated[
        bool,
        typer.Option(
            "--non-iid",
            help="Also compare FedAvg, FedProx, FedBN, Ditto, local and pooled on sites cut "
            "from one pool by label, quantity and feature skew (Dirichlet, --alpha).",
        ),
    ] = False,
    alpha: Annotated[
        float,
        typer.Option(min=0.01, help="--non-iid: Dirichlet concentration; smaller skews more."),
    ] = 0.5,
) -> None:
    """FLIP's round time against a bare Flower app in the same run, and bytes per round.

    With --deployment, also the round time on Flower's deployment engine (TLS and
    node authentication on) against a bare Flower app on the same SuperLink and
    SuperNodes, for the same model and sites. With --non-iid, each arm's mean site
    AUROC as a ratio to FedAvg's, per kind of skew.

    Example: flip bench fl --sites 3 --rounds 12 --non-iid
    """
    from flip.bench import fl
    from flip.cli.fl import stdout_to_stderr

    def progress(line: str) -> None:
        typer.echo(f"flip bench fl: {line}", err=True)

    figures = []
    with one_line_errors(), stdout_to_stderr():
        if timing:
            progress(
                f"{sites} sites x {rounds} rounds, FLIP and bare Flower in turn, {passes} pass(es)"
            )
            figures += fl.run(work, rounds, sites, secure=secagg, passes=passes, progress=progress)
        if whole:
            progress("whole `flip fl run` against a bare Flower app (4 sites, 30 rounds)")
            figures += fl.whole_command(work / "whole", passes=passes, progress=progress)
        if deployment:
            progress("deployment: a SuperLink and SuperNodes with TLS and node auth")
            figures += fl.deployment(work / "deployment", progress=progress)
        if non_iid:
            from flip.bench import noniid

            progress("non-IID: label, quantity and feature skew")
            figures += noniid.run(work / "non-iid", rounds, max(sites, 2), alpha)
    figures.sort(key=lambda f: f.unit != "x")  # the ratios against bare Flower first
    _print_figures("flip bench fl", figures)


@app.command("hub")
def bench_hub(
    agents: Annotated[int, typer.Option(help="Simulated site agents, polling at 1 Hz.")] = 100,
    seconds: Annotated[
        float, typer.Option(help="Measured seconds per database.", min=1.0, max=3600.0)
    ] = 20.0,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server URL; a scratch database is made there.")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    projects: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="Finished projects written into the hub before the pages are timed again.",
        ),
    ] = 300,
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("demo-out/bench-hub"),
) -> None:
    """Hub latency (p50/p99) under polling agents and a researcher, on SQLite and PostgreSQL.

    The hub runs as its own process; `/health` under the same load is the reference.

    Example: flip bench hub --agents 100 --seconds 20
    """
    from flip.bench.hub import run

    with one_line_errors():
        figures = run(work, agents, seconds, postgres, projects)
    _print_figures(f"flip bench hub ({agents} agents at 1 Hz + a researcher)", figures)


def _print_figures(title: str, figures) -> None:
    table = Table(title=title)
    for column in ("figure", "value", "unit", "note"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for f in figures:
        value = f"{f.value:,.3f}" if f.value < 10 else f"{f.value:,.0f}"
        table.add_row(f.name, value, f.unit, f.note)
    Console().print(table)


@app.command("analyse")
def bench_analyse(
    sites: Annotated[int, typer.Option(min=1, help="Generated sites.")] = 3,
    rows: Annotated[int, typer.Option(min=100, help="Rows (patients) per site.")] = 100_000,
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("demo-out/bench-analyse"),
) -> None:
    """Wall time of federated Table 1 and Kaplan-Meier, against numpy on the pooled arrays.

    Example: flip bench analyse --rows 5000 --work /tmp/flip-tour/analyse
    """
    from flip.bench.analyse import run

    with one_line_errors():
        figures = run(work, sites, rows)
    _print_figures(f"flip bench analyse ({sites} sites x {rows:,} rows)", figures)
