"""Date-times as real FHIR servers and exporters write them, outside the spec's pattern.

FHIR requires a time of day to carry a UTC offset and seconds (`2019-02-03T09:15:00Z`);
many exporters write `2019-02-03T09:15:00` (no offset), `2019-02-03T09:15Z` (no seconds),
`2019-02-03 09:15:00` (a space) or `+0100` (no colon). Each says unambiguously what local
time it was, and FLIP keeps local wall time with the offset dropped (see fhir._as_date),
so such a value is rewritten to the spec's form, with an offset of zero when it has none,
rather than dropped with the element that carries it (losing a record's only date).
"""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import date
from typing import Any

#: A date-time FHIR refuses but whose meaning is plain.
_LENIENT = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)

#: The warning rule counted for each element a repaired date-time saved.
REPAIRED = "fhir.datetime.lenient"


def _repaired(text: str) -> str | None:
    """The spec's form of a lenient date-time, or None when `text` is not one."""
    match = _LENIENT.match(text)
    if match is None:
        return None
    day, minutes, seconds, offset = match.groups()
    if offset is None:
        offset = "+00:00"
    elif offset != "Z" and ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    fixed = f"{day}T{minutes}{seconds or ':00'}{offset}"
    return fixed if fixed != text else None


def repair(value: Any) -> tuple[Any, bool]:
    """`value` (parsed JSON) with every lenient date-time string in it rewritten, and
    whether any was."""
    if isinstance(value, str):
        fixed = _repaired(value)
        return (value, False) if fixed is None else (fixed, True)
    if isinstance(value, dict):
        out, changed = {}, False
        for name, item in value.items():
            out[name], did = repair(item)
            changed |= did
        return out, changed
    if isinstance(value, list):
        pairs = [repair(item) for item in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False


#: The warning rule of a date read from a partial FHIR date (`2015`, `2015-06`).
PARTIAL = "fhir.date.partial"

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def partial_day(value: Any, last: bool = False) -> date | None:
    """The first (or, `last`, the last) day a partial date (`2015`, `2015-06`) can mean;
    None for anything else."""
    match = _PARTIAL.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2) or 0)
    if year < 1 or month > 12:
        return None
    first = date(year, month or 1, 1)
    if not last:
        return first
    month = month or 12
    return max(first, min(date(year, month, monthrange(year, month)[1]), date.today()))
