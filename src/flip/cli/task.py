"""`flip task propose`: put a training task before a project's sites."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flip.cli.hub_session import connected, fail, hub_errors, print_json, read_json
from flip.problems import first_problem

app = typer.Typer(
    help="Training tasks: propose one to a project's sites, who approve its hash.",
    no_args_is_help=True,
)


def _spec(given: str, seed: int):
    """The task a SPEC names: a built-in task's name, or a task JSON file."""
    from pydantic import ValidationError

    from flip.fl.tasks import BUILT_IN, TaskSpec

    if given in BUILT_IN:
        return BUILT_IN[given](seed)
    path = Path(given)
    if not path.is_file():
        fail(f"{given}: no such file, nor a built-in task ({', '.join(sorted(BUILT_IN))})")
    try:
        return TaskSpec.model_validate(read_json(path, "a task spec"))
    except ValidationError as exc:
        raise ValueError(f"{path}: {first_problem(exc)}") from None


@app.command()
def propose(
    spec: Annotated[
        str,
        typer.Argument(
            help="A task JSON (`flip fl pack-task` writes one) or a built-in task's name."
        ),
    ],
    project: Annotated[int, typer.Option(help="The project's id.")],
    seed: Annotated[int, typer.Option(help="A built-in task's seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Propose a task to a project; print the hash each site's admin approves.

    Each site recomputes the hash from the spec and its own copy of the code and
    declines a mismatch at once. `flip project show ID` shows each site's decision.

    Example: flip task propose mytask/task.json --project 3
    """
    from flip.fl.tasks import task_hash  # hashes the kind's code, as the sites do

    with hub_errors():
        task = _spec(spec, seed)
        digest = task_hash(task)
    with connected() as hub:
        hub.propose_task(project, digest, task.kind, task.model_dump(mode="json"))
    if as_json:
        print_json({"project": project, "hash": digest, "kind": task.kind, "name": task.name})
        return
    typer.echo(f"proposed {task.name} ({task.kind}) to project {project}")
    typer.echo(f"task hash: {digest}")
    typer.echo(f"next: once sites approve, flip run start --project {project} --task {digest}")
