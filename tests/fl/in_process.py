"""`flip` run in the test's own process: no interpreter to start for a command that needs none."""

import subprocess

from typer.testing import CliRunner

from flip.cli.app import app


def flip_here(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`flip args` as `subprocess.run` reports it; an exception the command did not turn into
    an exit status (a traceback for a user) is raised here."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)
