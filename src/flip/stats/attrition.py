"""Cohort attrition: the count left after each step, as a site releases it and combined.

A site releases each step's count unless it is small (1 to min_cell - 1, shown "<10"), and
withholds a step whose drop from the last step it released is small, since the difference
would count the few persons that step removed. Withheld steps are written "withheld".
"""

from __future__ import annotations

from itertools import pairwise

from flip.stats.suppression import hidden, is_small

WITHHELD = "withheld"


def release_attrition(counts: list[int], min_cell: int) -> list[int | str]:
    """A site's step counts (each at most the one before) as released."""
    if any(b > a for a, b in pairwise(counts)):
        raise ValueError(f"attrition counts must not grow from step to step: {counts}")
    released: list[int | str] = []
    last: int | None = None
    for count in counts:
        if is_small(count, min_cell):
            released.append(hidden(min_cell))
        elif last is not None and is_small(last - count, min_cell):
            released.append(WITHHELD)
        else:
            released.append(count)
            last = count
    return released


def combine_attrition(sites: dict[str, list[int | str]]) -> list[int | str]:
    """Per step, the sum of the sites' released counts; a step any site did not release is
    written as the known part with "+" ("120+"), since the rest is not known."""
    lengths = {len(steps) for steps in sites.values()}
    if len(lengths) > 1:
        raise ValueError(f"sites report different numbers of attrition steps: {sorted(lengths)}")
    combined: list[int | str] = []
    for column in zip(*sites.values(), strict=True):
        known = sum(v for v in column if isinstance(v, int))
        combined.append(known if all(isinstance(v, int) for v in column) else f"{known}+")
    return combined
