"""Dates, datetimes and numbers as OMOP ETL tools, Athena and databases write them."""

from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import BigInteger, Column, Date, DateTime, Double, Integer, String

from flip.data.sources.omop_values import Field, parse_date, parse_datetime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1937-12-1", datetime(1937, 12, 1)),
        ("1937-12-01", datetime(1937, 12, 1)),
        ("19371201", datetime(1937, 12, 1)),
        ("1937/12/01", datetime(1937, 12, 1)),
        ("2020-3-4T10:15", datetime(2020, 3, 4, 10, 15)),
        ("2020-03-04 10:15:30", datetime(2020, 3, 4, 10, 15, 30)),
        ("2020-03-04T10:15:30.250Z", datetime(2020, 3, 4, 10, 15, 30, 250000)),
        ("2020-03-04T23:15:30+02:00", datetime(2020, 3, 4, 23, 15, 30)),
        ("2020-03-04 23:15:30-0500", datetime(2020, 3, 4, 23, 15, 30)),
        (" 2020-03-04 ", datetime(2020, 3, 4)),
    ],
)
def test_dates_as_etl_tools_write_them(text, expected):
    assert parse_datetime(text) == expected
    assert parse_date(text) == expected.date()


@pytest.mark.parametrize("text", ["2010-13-45", "n/a", "04/03/2020", "2020-02-30", "2020"])
def test_what_is_not_a_date_is_an_error(text):
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_fields_read_text_and_database_values_alike():
    when = Field.of(Column("d", Date))
    stamp = Field.of(Column("t", DateTime))
    small = Field.of(Column("c", Integer))
    big = Field.of(Column("i", BigInteger))
    short = Field.of(Column("s", String(5)))
    assert when.read("") is None and when.read("  ") is None and when.read(None) is None
    assert when.read(datetime(2020, 1, 2, 3, 4)) == date(2020, 1, 2)
    assert stamp.read(date(2020, 1, 2)) == datetime(2020, 1, 2)
    assert big.read("10204.0") == 10204 and big.read(10204.0) == 10204
    assert big.read(Decimal("7")) == 7 and big.read(" 42 ") == 42
    assert short.read(" abc ") == "abc" and short.read(date(2020, 1, 2)) == "2020-01-02"
    for bad in ("1.5", "x"):
        with pytest.raises(ValueError):
            big.read(bad)
    with pytest.raises(ValueError, match="out of range"):
        small.read(str(2**31))


@pytest.mark.parametrize(
    "value", ["NaN", "inf", "-Infinity", "1e400", float("nan"), Decimal("Inf")]
)
def test_a_number_that_is_not_finite_is_unreadable(value):
    with pytest.raises(ValueError, match="finite"):
        Field.of(Column("value_as_number", Double)).read(value)
