"""The one reading of dates and compared numbers that every source shares (sources/values)."""

from datetime import date, datetime

import pytest

from flip.data.sources import omop_values, tabular_dates
from flip.data.sources.hl7v2_values import numeric
from flip.data.sources.values import compared, parse_when


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-01-09", date(2017, 1, 9)),
        ("1937-12-1", date(1937, 12, 1)),
        ("1937/12/01", date(1937, 12, 1)),
        ("2017.1.9", date(2017, 1, 9)),
        ("20170109", date(2017, 1, 9)),
        ("20170109 08:30", datetime(2017, 1, 9, 8, 30)),
        ("2017-1-9 9:05", datetime(2017, 1, 9, 9, 5)),
        ("2017-01-09T09:05:07,5", datetime(2017, 1, 9, 9, 5, 7, 500000)),
        ("2017-01-09T23:30:00+0100", datetime(2017, 1, 9, 23, 30)),
        ("2017-01-09 23:30:00 UTC", datetime(2017, 1, 9, 23, 30)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59)),
        (" 2017-01-09 ", date(2017, 1, 9)),
    ],
)
def test_every_source_reads_the_documented_forms_alike(text, expected):
    got = parse_when(text)
    assert got == expected and type(got) is type(expected)
    assert tabular_dates.parse_date(text.strip()) == expected
    assert omop_values.parse_datetime(text) == (
        expected if isinstance(expected, datetime) else datetime(*expected.timetuple()[:3])
    )


@pytest.mark.parametrize(
    "text", ["2017-02-30", "2017-13-01", "2017", "17-1-9", "2017-W02-1", "2017/01-09", "Jan 9 2017"]
)
def test_what_is_no_documented_form_is_refused_by_every_source(text):
    for parse in (parse_when, tabular_dates.parse_date, omop_values.parse_datetime):
        with pytest.raises(ValueError):
            parse(text)


def test_day_or_month_first_needs_the_configured_order():
    with pytest.raises(ValueError, match="day or month first"):
        parse_when("01/02/2017")
    with pytest.raises(ValueError, match="day or month first"):
        parse_when("25/12/2017")  # unambiguous by value, refused alike: one rule for a column
    assert parse_when("01/02/2017", "dmy") == date(2017, 2, 1)
    assert parse_when("01/02/2017", "mdy") == date(2017, 1, 2)
    assert parse_when("9.1.2017 14:30", "dmy") == datetime(2017, 1, 9, 14, 30)
    with pytest.raises(ValueError):
        parse_when("13/13/2017", "mdy")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<0.5", ("<", 0.5)),
        (">= 60", (">=", 60.0)),
        ("\u2264 3", ("<=", 3.0)),
        (" \u2265.5 ", (">=", 0.5)),
        ("=7", ("=", 7.0)),
        ("<1e-3", ("<", 0.001)),
        ("12", (None, 12.0)),
        ("-4.", (None, -4.0)),
    ],
)
def test_a_number_with_a_comparator(text, expected):
    assert compared(text) == expected


@pytest.mark.parametrize("text", ["", "<", "<>5", "< x", "1-3", "<inf", ">1e999", "5 mg"])
def test_what_is_not_a_compared_number(text):
    assert compared(text) is None


def test_hl7_nm_reads_the_comparators_fhir_and_csv_read():
    assert numeric("\u2264 3").operator == "<=" and numeric("\u2264 3").value == 3.0
    assert numeric("1.5e2").value == 150.0
    with pytest.raises(ValueError):
        numeric(">1e999")
