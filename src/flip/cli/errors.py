"""Turn expected failures into a one-line reason and a non-zero exit, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    pass

err = Console(stderr=True)


@contextmanager
def one_line_errors(*expected: type[BaseException]) -> Iterator[None]:
    """Print `error: …` (one line) and exit 1 on `expected`, OS, value and database errors."""
    from sqlalchemy.exc import SQLAlchemyError

    from flip.data.cdm.store import StoreError

    try:
        yield
    except (*expected, OSError, ValueError, StoreError, SQLAlchemyError) as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(Text.assemble(("error:", "red"), f" {line}"), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
