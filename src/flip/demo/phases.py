"""Timed phases of a demo journey: a rule with the phase's title, then its seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Phases:
    """Call as a context manager per phase; `seconds` keeps each phase's wall time by name."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, title: str) -> Iterator[None]:
        """Print the phase's title, run it, then print and keep how long it took."""
        self.console.rule(f"[bold]{title}")
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.console.print(f"  [dim]{self.seconds[name]:.1f} s[/dim]")
