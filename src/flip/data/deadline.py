"""A time limit on one work item: the site's agent sets it around the item, and the data
layer's long loops (a Circe expression's translation and statements) check it between
steps, so an item too costly is refused instead of holding the agent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[tuple[float, float] | None] = ContextVar("flip_deadline", default=None)


class TimeLimit(Exception):
    """The work item ran past the site's time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"it took longer than the site's limit of {seconds:g} s a work item")
        self.seconds = seconds


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Within the block, `check` raises TimeLimit once `seconds` have passed (None: never)."""
    if seconds is None:
        yield
        return
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def check() -> None:
    """Raise TimeLimit if the current work item is past its time limit."""
    limit = _deadline.get()
    if limit is not None and time.monotonic() > limit[0]:
        raise TimeLimit(limit[1])
