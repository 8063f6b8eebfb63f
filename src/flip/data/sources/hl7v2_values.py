"""HL7 v2 values as real systems send them: DTM timestamps, NM and SN numbers with comparators.

A number with one decimal comma and no point, digits on both sides (`13,5`), as European
labs send it, is read as a decimal (the caller counts a warning: `Number.comma`).

HL7's explicit null `""` ("delete the value") reads as no value everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from flip.data.sources.values import COMPARATORS, NUMBER, compared

#: HL7's explicit null: the sender says the field has no value (and any earlier one is void).
NULL = '""'

_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})?(\d{2})?(?:\.\d{1,4})?)?(?:[+-]\d{4}|Z)?$"
)


def timestamp(value: str) -> date | None:
    """A DTM/TS value as a date, or a datetime when it has an hour (seconds and zone optional;
    the wall-clock time is kept, the zone offset dropped). Raise ValueError when malformed."""
    value = value.strip()
    if not value or value == NULL:
        return None
    match = _DTM.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an HL7 date/time")
    year, month, day, hour, minute, second = match.groups()
    when = date(int(year), int(month or 1), int(day or 1))
    if hour is None:
        return when
    return datetime(when.year, when.month, when.day, int(hour), int(minute or 0), int(second or 0))


def birth(value: str) -> tuple[date | None, int]:
    """A PID-7 value and how many of its year, month and day it gave (3, 2 or 1, as
    `SourcePerson.birth_parts` counts them): `1970` is 1970 and `197005` May 1970, each
    its first day, no day invented (`1970+0100` too: a zone is no day). Raise ValueError
    when malformed."""
    when = timestamp(value)
    found = _DTM.match(value.strip())
    if when is None or found is None:
        return when, 3
    _, month, day, *_ = found.groups()
    return when, 3 if day else 2 if month else 1


def truncated(value: str) -> tuple[date | None, int]:
    """The most of a malformed date that is valid, and its parts (see `birth`): year and
    month, or the year alone; (None, 3) when not even the year is."""
    digits = value.strip()[:6]
    for length, parts in ((6, 2), (4, 1)):
        try:
            return date(int(digits[:4]), int(digits[4:length] or 1), 1), parts
        except ValueError:
            continue
    return None, 3


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric result: its value and comparator, or (for ranges, ratios and 2+) no value and
    the result as text."""

    value: float | None
    operator: str | None = None
    text: str | None = None
    #: Whether a decimal comma was read as a point (`13,5` is 13.5): counted as a warning.
    comma: bool = False


#: A number written with a decimal comma, as European labs send it: digits on both sides of
#: one comma, no point (`13,5`, `<0,5`); `1,234` is read so too (HL7 NM has no thousands).
_DECIMAL_COMMA = re.compile(r"^([^,.]*\d),(\d[^,.]*)$")


def _pointed(value: str) -> tuple[str, bool]:
    """`value` with its one unambiguous decimal comma as a point, and whether it had one."""
    found = _DECIMAL_COMMA.match(value)
    return (f"{found[1]}.{found[2]}", True) if found else (value, False)


def numeric(value: str) -> Number:
    """An NM value, with a leading comparator if the lab sent one (`<0.5`, `>= 60`).
    Raise ValueError when it is not a number."""
    value = value.strip()
    if not value or value == NULL:
        return Number(None)
    pointed, comma = _pointed(value)
    found = compared(pointed)
    if found is None:
        raise ValueError(f"{value!r} is not a number")
    return Number(found[1], found[0], comma=comma)


def structured(comparator: str, first: str, separator: str, second: str) -> Number:
    """An SN value from its four components: `<^0.5`, `^182`, `>^60`; a range (`^1^-^3`),
    ratio (`^1^:^128`) or suffix (`^2^+`) keeps no single value but its text.
    Raise ValueError when it is not a structured number."""
    parts = [p.strip() if p.strip() != NULL else "" for p in (comparator, first, separator, second)]
    comparator, first, separator, second = parts
    if comparator and comparator not in COMPARATORS:
        raise ValueError(f"comparator {comparator!r} is not one of {', '.join(COMPARATORS)}")
    if not separator and not second:
        if not first:
            return Number(None)
        number = numeric(first)
        if comparator and number.operator:
            raise ValueError(f"two comparators in {comparator}^{first}")
        return Number(number.value, comparator or number.operator, comma=number.comma)
    (first, comma_first), (second, comma_second) = _pointed(first), _pointed(second)
    for part in (first, second):
        if part and not re.fullmatch(NUMBER, part):
            raise ValueError(f"{part!r} is not a number")
    if separator not in ("-", ":", "/", "+", "."):
        raise ValueError(f"separator {separator!r} is not one of - : / + .")
    text = f"{comparator}{first}{separator}{second}"
    return Number(None, None, text, comma=comma_first or comma_second)
