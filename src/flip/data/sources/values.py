"""Values as sources write them, read one way by every reader: dates and datetimes, and
numbers with a comparator.

Dates and datetimes (`parse_when`) accept exactly these forms, surrounding spaces aside:

- year first, `-`, `/` or `.` between the parts, zero-padded or not: `2017-01-09`,
  `2017-1-9`, `2017/01/09`, `2017.1.9` (one separator throughout);
- the compact `YYYYMMDD` (Athena's vocabulary files): `20170109`;
- either, then a time of day after `T` or spaces: `H:MM` or `H:MM:SS` (each part one or
  two digits, as warehouses write `9:5`), a fraction of a
  second after `.` or `,` (up to 9 digits, kept to the microsecond), then an optional zone
  `Z`, `UTC`, `+HH`, `+HHMM` or `+HH:MM`. The wall-clock time is kept as written; a zone
  is dropped, not converted (so a row's date and datetime agree). A leap second (`:60`) is
  the second before it;
- day or month first (`09/01/2017`, `9.1.2017`, `09-01-2017 14:30`) only when the caller
  says which comes first (`order="dmy"` or `"mdy"`): `01/02/2017` is the 1st of February in
  Europe and the 2nd of January in the USA, and no value says which.

Anything else (`17-1-9`, `2017`, week dates, month names) is a ValueError. A value with a
time of day comes back as a `datetime`, one without as a `date`.

Numbers with a comparator (`compared`): an optional leading `<`, `<=`, `=`, `>=`, `>`
(or `≤`, `≥`), spaces allowed around it, then a decimal number (`0.5`, `.5`, `5.`, `1e3`),
as labs write results beyond their measuring range (`<0.5`, `>= 60`).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from functools import lru_cache

#: Day orders a caller may configure for day- or month-first dates.
ORDERS = ("dmy", "mdy")


class DateOrderUnknown(ValueError):
    """A day- or month-first date read with no day order configured: never guessed."""


_TIME = (
    r"(?:(?:T|\s+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)?)?"
)
_YEAR_FIRST = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})" + _TIME)
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})" + _TIME)
_DAY_OR_MONTH_FIRST = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})" + _TIME)

#: A decimal number as sources write one (a sign, digits with a point, an exponent).
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"

#: The comparators a value may carry, as OMOP's operator concepts name them.
COMPARATORS = ("<", "<=", "=", ">=", ">")

_COMPARED = re.compile(rf"\s*(<=|>=|<|>|=|\u2264|\u2265)?\s*({NUMBER})\s*")
_SYMBOLS = {"\u2264": "<=", "\u2265": ">="}


def _when(year: str, month: str, day: str, time: tuple[str | None, ...]) -> date:
    hour, minute, second, fraction = time
    if hour is None:
        return date(int(year), int(month), int(day))
    seconds = int(second or 0)
    leap = seconds == 60
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        59 if leap else seconds,
        int((fraction or "0")[:6].ljust(6, "0")),
    )


@lru_cache(maxsize=65536)
def parse_when(text: str, order: str | None = None) -> date:
    """A date, or a datetime when it has a time of day, in one of the module's forms;
    `order` ("dmy" or "mdy") reads day- or month-first dates. ValueError otherwise."""
    text = text.strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    found = _YEAR_FIRST.fullmatch(text)
    if found is not None:
        year, _, month, day, *time = found.groups()
        return _when(year, month, day, tuple(time))
    found = _COMPACT.fullmatch(text)
    if found is not None:
        year, month, day, *time = found.groups()
        return _when(year, month, day, tuple(time))
    found = _DAY_OR_MONTH_FIRST.fullmatch(text)
    if found is not None:
        first, _, second, year, *time = found.groups()
        if order not in ORDERS:
            raise DateOrderUnknown(
                f"{text!r} is day or month first: say which ({' or '.join(ORDERS)}) to read it"
            )
        day, month = (first, second) if order == "dmy" else (second, first)
        return _when(year, month, day, tuple(time))
    raise ValueError(f"{text!r} is not a date")


def as_when(value: object, order: str | None = None) -> date:
    """A source value (text, date or datetime) as a date or a naive datetime, else ValueError."""
    if type(value) is str:
        return parse_when(value, order)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return value
    return parse_when(str(value), order)


def as_datetime(when: date) -> datetime:
    """A date as the datetime of its midnight; a datetime as itself."""
    if isinstance(when, datetime):
        return when
    return datetime(when.year, when.month, when.day)


def compared(text: str) -> tuple[str | None, float] | None:
    """(comparator or None, value) of a finite number with an optional leading comparator
    (`<0.5` -> ("<", 0.5), `≥ 60` -> (">=", 60.0), `7` -> (None, 7.0)); None otherwise."""
    found = _COMPARED.fullmatch(text)
    if found is None:
        return None
    value = float(found[2])
    if not math.isfinite(value):
        return None
    operator = found[1]
    return _SYMBOLS.get(operator, operator), value
