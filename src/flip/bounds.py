"""Bounds on what a request or a work item may hold, shared by the hub that accepts it and
the site that runs it (a leaf: any layer may import it).

A value out of bounds is refused with the place it sits and the reason, before
anything parses, stores or compiles it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Criteria (inclusions plus exclusions) a cohort definition may hold: each is a subquery,
#: and DuckDB's binder gives up near 1,200 (at 800 one count takes seconds).
MAX_CRITERIA = 100
#: Concepts one criterion may name.
MAX_CONCEPTS = 5000
#: How deep JSON may nest: a task spec or cohort definition needs under ten levels.
MAX_DEPTH = 32
#: The integers the hub and the sites store (64-bit signed).
INT64 = (-(2**63), 2**63 - 1)
#: The largest magnitude of a number in a task spec or cohort definition: no learning
#: rate, noise multiplier or lab value comes near it, and the arithmetic on it cannot overflow.
MAX_MAGNITUDE = 1e12

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

Location = tuple[str | int, ...]


def json_problems(
    value: Any, where: Location = (), max_magnitude: float | None = None
) -> list[tuple[Location, str]]:
    """Every place in parsed JSON that no store can keep safely, with the reason.

    Refused: nesting beyond MAX_DEPTH, integers beyond 64 bits, NaN and infinities (and,
    with `max_magnitude`, numbers beyond it), NUL characters and lone surrogates in strings.
    """
    problems: list[tuple[Location, str]] = []
    _check(value, where, max_magnitude, problems)
    return problems


def _check(
    value: Any, where: Location, limit: float | None, problems: list[tuple[Location, str]]
) -> None:
    if len(where) > MAX_DEPTH:
        problems.append((where, f"nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            place = (*where, _UNSTORABLE.sub("\ufffd", key))
            if _UNSTORABLE.search(key):
                problems.append((place, "a key " + _string_problem(key).removeprefix("a string ")))
            _check(item, place, limit, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, (*where, index), limit, problems)
    elif isinstance(value, str):
        if _UNSTORABLE.search(value):
            problems.append((where, _string_problem(value)))
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            problems.append((where, "an integer beyond 64 bits"))
        elif limit is not None and abs(value) > limit:
            problems.append((where, f"a number beyond ±{limit:g}"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append((where, "not a finite number (NaN or infinity)"))
        elif limit is not None and abs(value) > limit:
            problems.append((where, f"{value:g} is beyond ±{limit:g}"))


def _string_problem(text: str) -> str:
    if "\x00" in text:
        return "a string holding a NUL character"
    return "a string holding a lone surrogate (not valid Unicode)"


def describe(problems: list[tuple[Location, str]]) -> str:
    """The first problem as one line: `where: why` (and how many more)."""
    where, why = problems[0]
    place = ".".join(str(part) for part in where) or "the value"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{place}: {why}{more}"


def loads_finite(text: str | bytes) -> Any:
    """Parse stored JSON, reading NaN and infinities (as Python's json writes them) as null."""
    return json.loads(text, parse_constant=lambda _: None, parse_float=_finite_or_none)


def _finite_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None
