"""OMOP CDM values as ETL tools, Athena and databases write them, read into Python values.

Dates and datetimes in the forms `values.parse_when` documents (ISO padded or not,
year-first with `/`, Athena's `YYYYMMDD`, a time after `T` or a space, a zone dropped).
Day- or month-first dates (`01/02/2020`) only with a configured day order ("dmy" or "mdy"):
without one they are `values.DateOrderUnknown`, never guessed.
Text is stripped; an empty string is a null. A number must be finite (not NaN or infinity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Date, DateTime, Double, Integer, String

from flip.data.sources.values import as_datetime, parse_when

_INT32 = 2**31
_INT64 = 2**63


def parse_datetime(text: str, order: str | None = None) -> datetime:
    """A date or datetime as `values.parse_when` reads it (day- or month-first ones only with
    `order`, "dmy" or "mdy"), as a datetime (midnight for a date)."""
    return as_datetime(parse_when(text, order))


def parse_date(text: str, order: str | None = None) -> date:
    """The calendar day of a date or datetime string (see `parse_datetime`)."""
    when = parse_when(text, order)
    return when.date() if isinstance(when, datetime) else when


def parse_integer(text: str) -> int:
    """An integer, also when written as a whole float (`10204.0`, as some exports do)."""
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise ValueError(f"{text!r} is not a whole number") from None
        return int(number)


#: What exports write for a null: SQL dumps `NULL` and `\N` (MySQL, PostgreSQL COPY), R `NA`.
NULLS = frozenset(("NULL", "NA", "\\N"))


@dataclass(frozen=True, slots=True)
class Field:
    """How one CDM column is read: its kind, whether it is required, and its bounds."""

    name: str
    kind: str
    required: bool
    length: int | None = None
    bound: int | None = None

    @classmethod
    def of(cls, column: Column) -> Field:
        """The field of a SQLAlchemy column of the CDM schema."""
        kind, bound, length = "text", None, None
        if isinstance(column.type, DateTime):
            kind = "datetime"
        elif isinstance(column.type, Date):
            kind = "date"
        elif isinstance(column.type, BigInteger):
            kind, bound = "integer", _INT64
        elif isinstance(column.type, Integer):
            kind, bound = "integer", _INT32
        elif isinstance(column.type, Double):
            kind = "number"
        elif isinstance(column.type, String):
            length = column.type.length
        return cls(column.name, kind, not column.nullable, length, bound)

    def read(self, value: object, order: str | None = None) -> object:
        """The column's value from text or a database value; None when empty or a null
        marker (NULLS). A day- or
        month-first date is read in `order` ("dmy" or "mdy"), never guessed.

        Raises ValueError when the value cannot be this column's kind (`DateOrderUnknown`
        for a day- or month-first date without an order).
        """
        if value is None:
            return None
        if isinstance(value, str):
            value = value.strip()
            if not value or value in NULLS:
                return None
            if order is not None and self.kind in ("date", "datetime"):
                return (parse_date if self.kind == "date" else parse_datetime)(value, order)
            return _FROM_TEXT[self.kind](self, value)
        return _FROM_VALUE[self.kind](self, value)


def _bounded(field: Field, number: int) -> int:
    assert field.bound is not None
    if not -field.bound <= number < field.bound:
        raise ValueError(f"{number} is out of range for {field.name}")
    return number


def _integer_value(field: Field, value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _bounded(field, value)
    return _bounded(field, parse_integer(str(value)))


def _date_value(field: Field, value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return parse_date(str(value))


def _datetime_value(field: Field, value: object) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return parse_datetime(str(value))


def _number_value(field: Field, value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _text_value(field: Field, value: object) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    return text.strip()


_FROM_TEXT: dict[str, Callable[[Field, str], object]] = {
    "date": lambda f, v: parse_date(v),
    "datetime": lambda f, v: parse_datetime(v),
    "integer": lambda f, v: _bounded(f, parse_integer(v)),
    "number": _number_value,
    "text": lambda f, v: v,
}

_FROM_VALUE: dict[str, Callable[[Field, object], object]] = {
    "date": _date_value,
    "datetime": _datetime_value,
    "integer": _integer_value,
    "number": _number_value,
    "text": _text_value,
}
