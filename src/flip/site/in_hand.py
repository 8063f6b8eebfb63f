"""The work item the agent is handling, kept in a file, so a crash on it is not repeated.

An exception is refused where it is raised; a crash that no exception reports (the
process killed while DuckDB works, out of memory) leaves the file behind, and the
agent's next start refuses that item instead of trying it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class InHand:
    """The key of the item in hand, in `path`; what the last run died on, read at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.died_on: str | None = (
            path.read_text(encoding="utf-8").strip() or None if path.exists() else None
        )

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Mark `key` as in hand while the block runs; unmarked however the block ends."""
        self.path.write_text(key, encoding="utf-8")
        try:
            yield
        finally:
            self.path.unlink(missing_ok=True)

    def forget(self) -> None:
        """The item the last run died on is dealt with."""
        self.died_on = None
