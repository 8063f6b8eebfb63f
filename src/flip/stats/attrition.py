"""Cohort attrition combined across sites.

A site releases each step's count unless it is small (1 to min_cell - 1, shown "<10"), and
withholds a step ("withheld") whose persons differ by a few from a set whose count it
released before: its differencing guard decides (flip.data.cohort.circe.attrition).
"""

from __future__ import annotations

WITHHELD = "withheld"


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
