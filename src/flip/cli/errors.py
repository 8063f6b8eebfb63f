"""Turn expected failures into a one-line reason and a non-zero exit, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

err = Console(stderr=True)


@contextmanager
def one_line_errors(*expected: type[BaseException]) -> Iterator[None]:
    """Print `error: …` and exit 1 on any of `expected` (plus OSError and ValueError)."""
    try:
        yield
    except (*expected, OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
