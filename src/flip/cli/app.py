"""The root `flip` command."""

from __future__ import annotations

import os

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
from flip.cli.interrupt import reported
from flip.cli.query import query
from flip.cli.verify import verify
from flip.private_files import UMASK

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
    """Print FLIP's version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `flip` console script: nothing it creates is open to other users;
    Ctrl-C ends it with one line, `interrupted`, and exit status 130."""
    os.umask(UMASK)
    with reported():
        app()
