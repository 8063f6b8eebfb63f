"""Turn expected failures into a one-line reason and a non-zero exit, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

err = Console(stderr=True)


def print_error(reason: str) -> None:
    """Print `error: REASON` on stderr, control characters written out: a reason may quote a
    file or an answer someone else wrote."""
    from flip.problems import as_text

    err.print(
        Text.assemble(("error:", "red"), f" {as_text(reason)}"), highlight=False, soft_wrap=True
    )


@contextmanager
def one_line_errors(*expected: type[BaseException]) -> Iterator[None]:
    """Print `error: …` (one line) and exit 1 on `expected`, OS, value and database errors."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from flip.cli.interrupt import interrupted
    from flip.data.cdm.store import StoreError
    from flip.problems import first_problem

    try:
        yield
    except (*expected, OSError, ValueError, StoreError, SQLAlchemyError) as exc:
        if interrupted():
            raise KeyboardInterrupt from None
        if isinstance(exc, ValidationError):
            line = f"{exc.title}: {first_problem(exc)}"
        else:
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print_error(line)
        raise typer.Exit(1) from None
