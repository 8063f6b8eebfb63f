"""`flip demo`: the whole federated journey on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors


def demo(
    sites: Annotated[
        int, typer.Option(help="How many synthetic hospitals (the last one is small).")
    ] = 3,
    rounds: Annotated[int, typer.Option(help="Federated rounds of FedAvg.")] = 10,
    out: Annotated[
        Path, typer.Option(help="Folder for stores, hub database and the report.")
    ] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="Seed for the synthetic world and the splits.")] = 0,
) -> None:
    """Run the federated journey: synthetic hospitals -> OMOP stores -> hub -> approval -> training.

    Writes OUT/results.json (per-site AUROC of local-only, federated and pooled
    models), OUT/report.md and OUT/auroc.png. Needs no server: the hub runs on
    127.0.0.1 for the length of the demo.
    """
    from flip.demo.journey import DemoError, DemoOptions, run_demo

    with one_line_errors(DemoError):
        run_demo(DemoOptions(sites=sites, rounds=rounds, out=out, seed=seed))
