"""Small-cell suppression of released counts, with secondary suppression."""

from __future__ import annotations

DEFAULT_MIN_CELL = 10


def hidden(min_cell: int) -> str:
    """How a suppressed count is written: "<10" for a threshold of 10."""
    return f"<{min_cell}"


def is_small(count: int, min_cell: int) -> bool:
    """Whether a count must not be released (between 1 and min_cell - 1)."""
    return 0 < count < min_cell


def total(counts: list[int | str]) -> int | str:
    """The sum of released counts: exact when every count was released, else ">=N" over the
    released ones (a total beside a hidden count would give that count away by difference)."""
    known = sum(c for c in counts if isinstance(c, int))
    return known if all(isinstance(c, int) for c in counts) else f">={known}"


#: How a count is written when releasing it would give a withheld count away by difference.
WITHHELD = "withheld"


def suppress_counts(counts: dict[str, int], min_cell: int) -> dict[str, int | str]:
    """Counts as released: small cells hidden, then more cells hidden until none can be
    recovered from the released total (two or more hidden, together at least min_cell)."""
    hide = {level for level, count in counts.items() if is_small(count, min_cell)}
    candidates = sorted(
        (count, level) for level, count in counts.items() if count > 0 and level not in hide
    )
    while hide and (len(hide) < 2 or sum(counts[level] for level in hide) < min_cell):
        if not candidates:
            break
        hide.add(candidates.pop(0)[1])
    return {level: hidden(min_cell) if level in hide else count for level, count in counts.items()}
