"""Dates of tabular sources: a mapping's strptime formats, and ages at an event.

Without a format, a value is read as `values.parse_when` reads every source's dates. With
one (strptime's), the format is tried first, then `parse_when`, then the format on the
part before a time of day. A value with a time of day comes back as a `datetime` (its
wall-clock time as written; a zone is dropped, not converted), one without as a `date`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache

from flip.data.sources.values import as_when, parse_when

#: Days in one unit of an age at the event.
AGE_UNITS = {"years": 365.25, "months": 30.4375, "weeks": 7.0, "days": 1.0}

_TIME = re.compile(
    r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%X", "%c", "%p", "%T", "%R")


def has_time(fmt: str) -> bool:
    """Whether a strptime format reads a time of day."""
    return any(directive in fmt for directive in _TIME_DIRECTIVES)


def check_format(fmt: str) -> None:
    """Raise ValueError when `fmt` is not a strptime format that reads a date."""
    if "%" not in fmt:
        raise ValueError(f"{fmt!r} has no % directives")
    sample = datetime(2001, 2, 3, 4, 5, 6)
    try:
        parsed = datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as exc:
        raise ValueError(f"{fmt!r} is not a strptime format: {exc}") from None
    if parsed.date() != sample.date():
        raise ValueError(f"{fmt!r} does not read a whole date (year, month and day)")


def _with_time(text: str, fmt: str) -> datetime:
    head, _, tail = text.replace("T", " ", 1).partition(" ")
    found = _TIME.fullmatch(tail.strip())
    if not found:
        raise ValueError(f"{text!r} does not match {fmt!r}")
    day = datetime.strptime(head, fmt)
    hour, minute, second, fraction = found.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return day.replace(
        hour=int(hour), minute=int(minute), second=int(second or 0), microsecond=micro
    )


@lru_cache(maxsize=65536)
def parse_date(text: str, fmt: str | None = None) -> date:
    """A stripped, non-empty text as a `date`, or a `datetime` when it carries a time of day."""
    if fmt is None:
        return parse_when(text)
    try:
        parsed = datetime.strptime(text, fmt)
        return parsed if has_time(fmt) else parsed.date()
    except ValueError:
        pass
    try:
        return parse_when(text)
    except ValueError:
        pass
    try:
        return _with_time(text, fmt)
    except ValueError:
        raise ValueError(f"{text!r} does not match {fmt!r} nor a date form FLIP reads") from None


def as_date(value: object, fmt: str | None = None) -> date:
    """A source value (text, date, datetime) as a date or a naive datetime, else ValueError."""
    if type(value) is str:
        return parse_date(value, fmt)
    if fmt is None or isinstance(value, date):
        return as_when(value)
    return parse_date(str(value).strip(), fmt)


def _plus_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    for last in (day.day, 30, 29, 28):
        try:
            return day.replace(year=year, month=month + 1, day=min(day.day, last))
        except ValueError:
            continue
    raise ValueError(f"no day {months} months after {day}")


def at_age(birth: date, age: float, unit: str) -> date:
    """The day a person born on `birth` reached `age` (in `unit`, one of AGE_UNITS): whole
    years and months by the calendar, the rest in days."""
    day = birth.date() if isinstance(birth, datetime) else birth
    if unit in ("years", "months"):
        months = age * 12 if unit == "years" else age
        whole = int(months)
        return _plus_months(day, whole) + timedelta(days=round((months - whole) * 30.4375))
    return day + timedelta(days=round(age * AGE_UNITS[unit]))


#: strptime directives a birth date's kept parts are read by (any other: nothing is kept).
_PARTS = {"%Y": r"(?P<year>\d{4})", "%m": r"(?P<month>\d{1,2})", "%d": r"\d{1,2}"}


def kept_year(value: str, fmt: str | None) -> tuple[date, int] | None:
    """The most of an impossible date that is valid (`31/02/1970`): its year and month (as
    the first of the month, 2 parts) or its year alone (1 part), read where the mapping's
    `fmt` (or, without one, ISO order `YYYY-MM-DD`) places them; None when it has no year."""
    pattern = fmt or "%Y-%m-%d"
    pieces = re.split(r"(%.)", pattern)
    if any(p.startswith("%") and p not in _PARTS for p in pieces if p):
        return None
    regex = "".join(_PARTS[p] if p in _PARTS else re.escape(p) for p in pieces if p)
    found = re.fullmatch(regex, value.strip()) if "%Y" in pieces else None
    if found is None or not 1 <= int(found["year"]) <= 9999:
        return None
    month = int(found["month"]) if "month" in found.groupdict() else 0
    if 1 <= month <= 12:
        return date(int(found["year"]), month, 1), 2
    return date(int(found["year"]), 1, 1), 1
