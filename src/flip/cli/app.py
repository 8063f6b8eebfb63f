"""The root `flip` command."""

from __future__ import annotations

import copy

import typer

from flip import __version__
from flip.cli import (
    analyse,
    analysis,
    bench,
    demo,
    fl,
    hub,
    models,
    project,
    run,
    site,
    synth,
    task,
)
from flip.cli.account import login, logout
from flip.cli.query import query
from flip.cli.verify import verify

app = typer.Typer(
    name="flip",
    help="FLIP: standardise hospital data to OMOP CDM and train models across sites "
    "without moving a record. Start with `flip demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(demo.app, name="demo")
app.command()(verify)
app.add_typer(site.app, name="site")
app.add_typer(hub.app, name="hub")
app.add_typer(synth.app, name="synth")
app.add_typer(fl.app, name="fl")
app.add_typer(models.app, name="models")
app.add_typer(bench.app, name="bench")
app.add_typer(analyse.app, name="analyse")
app.add_typer(analysis.app, name="analysis")
app.command()(login)
app.command()(logout)
app.add_typer(project.app, name="project")
app.command()(query)
app.add_typer(task.app, name="task")
app.add_typer(run.app, name="run")


@app.command()
def version() -> None:
    """Print FLIP's version.

    Example: flip version
    """
    typer.echo(__version__)


def for_arguments(args: list[str]) -> typer.Typer:
    """The app with only the command group `args` names first (all of it otherwise): typer
    reads the signature of every command it builds, a tenth of a second or more for all of
    them, which a command of one group has no use for. Usage and help are the same."""
    wanted = [info for info in app.registered_groups if args and info.name == args[0]]
    if not wanted:
        return app
    narrow = copy.copy(app)
    narrow.registered_groups, narrow.registered_commands = wanted, []
    return narrow
