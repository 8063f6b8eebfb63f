"""`flip fl run-task`: a task spec (any kind: tabular, text, image, adapters) federated over
site stores in Flower's simulation engine, each site checking its own approval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from flip.cli.errors import one_line_errors


def run_task(
    spec: Annotated[
        Path, typer.Argument(help="A task JSON (`flip fl pack-task` writes one).", exists=True)
    ],
    site: Annotated[list[Path], typer.Option(help="A site's site.yaml; repeat for each site.")],
    project: Annotated[
        str, typer.Option(help="The project the sites approved the task's hash under.")
    ],
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Federated rounds (default: the task's).")
    ] = None,
    evaluate_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Carry each round's validation metrics with the next train replies and send "
            "evaluate messages only every K rounds and after the last (default: the task's "
            "evaluate_every, else every round).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Federate a task over site stores in Flower's simulation engine, one virtual site per
    site.yaml; each site trains only once its admin approved the task's hash
    (`flip site approve PROJECT HASH`), with its own policy, weights registry and budget.

    For tasks `flip fl run` cannot take: notes, images and LoRA adapters on pretrained
    encoders the sites registered (`flip site models add`).

    Example: flip fl run-task risk-net/task.json --site a/site.yaml --site b/site.yaml --project 3
    """
    from pydantic import ValidationError

    from flip.cli.fl import _columns, stdout_to_stderr
    from flip.config import SiteConfig
    from flip.data.ledger import Ledger
    from flip.fl.runtime.simulation import SimulationError, simulate
    from flip.fl.server import task_server_app
    from flip.fl.strategies import sites_problem
    from flip.fl.tasks import TaskSpec, task_hash
    from flip.problems import first_problem

    err = Console(stderr=True)
    with one_line_errors(SimulationError):
        try:
            task = TaskSpec.model_validate_json(spec.read_bytes())
        except ValidationError as exc:
            raise ValueError(f"{spec}: {first_problem(exc)}") from None
        digest = task_hash(task)
        count = rounds or task.rounds or 1
        if task.rounds is not None and count > task.rounds:
            raise ValueError(
                f"--rounds {count}: the sites approve {task.rounds} rounds of this task and "
                "refuse any more"
            )
        if problem := sites_problem(task.strategy.name, task.strategy.options, len(site)):
            raise ValueError(f"{spec}: {problem}")
        every = evaluate_every or (None if task.secure_aggregation else task.evaluate_every)
        waiting = []
        for path in site:
            config = SiteConfig.load(path)
            with Ledger(config.ledger) as ledger:
                if not ledger.is_approved(project, digest):
                    waiting.append(config.name)
        if waiting:
            raise ValueError(
                f"{', '.join(waiting)} did not approve task {digest} for project {project}: "
                f"each site's admin runs `flip site approve {project} {digest}`"
            )
        with stdout_to_stderr(), Progress(*_columns(), console=err) as bar:
            progress = bar.add_task(f"{task.kind} rounds", total=count, status="")

            def on_round(number: int, metrics: dict[str, float]) -> None:
                loss = metrics.get("loss", float("nan"))
                bar.update(progress, completed=number, status=f"loss {loss:.3f}")

            server_app, result = task_server_app(
                project,
                task,
                rounds=count,
                n_sites=len(site),
                on_round=on_round,
                **({"evaluate_every": every} if every else {}),
            )
            simulate(server_app, site, secure=task.secure_aggregation)
    document = {
        "task_hash": digest,
        "kind": task.kind,
        "rounds": result.rounds,
        "best_round": result.best_round,
        "per_site": result.per_site,
    }
    if as_json:
        typer.echo(json.dumps(document))
        return
    _print(document)


def _print(document: dict) -> None:
    table = Table(title=f"{document['kind']} task {document['task_hash'][:12]}: test split")
    names = sorted({k for metrics in document["per_site"].values() for k in metrics})
    table.add_column("site")
    for name in names:
        table.add_column(name, justify="right")
    for site, metrics in document["per_site"].items():
        table.add_row(site, *(_cell(metrics.get(name)) for name in names))
    Console().print(table)


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value if value is not None else "")
