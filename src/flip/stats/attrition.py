"""Cohort attrition combined across sites.

A site releases each step's count unless it is small (1 to min_cell - 1, shown "<10"), and
withholds a step ("withheld") whose persons differ by a few from a set whose count it
released before: its differencing guard decides (flip.data.cohort.circe.attrition).
"""

from __future__ import annotations

WITHHELD = "withheld"
#: The name of the first step: persons with a qualified entry event.
PRIMARY = "primary criteria"


def circe_expression(definition: object) -> dict | None:
    """The Circe expression in a decoded cohort JSON (bare, or FLIP's wrapper of one), or None
    for FLIP's own cohort JSON."""
    if not isinstance(definition, dict):
        return None
    if isinstance(definition.get("expression"), dict):
        return definition["expression"]
    return definition if {"ConceptSets", "PrimaryCriteria"} <= definition.keys() else None


def step_names(definition: object) -> list[str]:
    """A cohort's attrition steps: the primary criteria, then each inclusion rule by name
    ("rule 2" when it has none); none for FLIP's own cohort JSON."""
    expression = circe_expression(definition)
    if expression is None:
        return []
    rules = expression.get("InclusionRules") or []
    named = [r.get("name") if isinstance(r, dict) else None for r in rules]
    return [PRIMARY, *(str(n) if n else f"rule {i + 1}" for i, n in enumerate(named))]


def is_released_step(value: object, threshold: int) -> bool:
    """Whether a step's value is one a site with this threshold may send: zero or a count at
    or over the threshold, its own "<N", or "withheld"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == 0 or value >= threshold
    return value in (WITHHELD, f"<{threshold}")


def combine_attrition(
    sites: dict[str, list[int | str] | None], steps: int | None = None
) -> list[int | str]:
    """Per step, the sum of the sites' released counts; a step any site did not release is
    written as the least it can be with "+" ("120+"): the released counts and one for each
    hidden "<N" (a hidden count is 1 to N - 1; "withheld" may be 0). A site given as None (it
    has not answered, or could not) is unknown at every one of the `steps`."""
    lengths = {len(v) for v in sites.values() if v is not None}
    lengths |= set() if steps is None else {steps}
    if len(lengths) > 1:
        raise ValueError(f"sites report different numbers of attrition steps: {sorted(lengths)}")
    if not lengths or not sites:
        return []
    n = lengths.pop()
    combined: list[int | str] = []
    filled = [v if v is not None else [WITHHELD] * n for v in sites.values()]
    for column in zip(*filled, strict=True):
        known = sum(v for v in column if isinstance(v, int))
        if all(isinstance(v, int) for v in column):
            combined.append(known)
        else:
            least = known + sum(1 for v in column if isinstance(v, str) and v.startswith("<"))
            combined.append(f"{least}+")
    return combined
