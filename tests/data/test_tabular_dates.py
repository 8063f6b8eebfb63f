"""Lenient dates and datetimes of tabular sources, as extracts and warehouses write them."""

from datetime import date, datetime

import pytest

from flip.data.sources.tabular_dates import as_date, at_age, check_format, parse_date


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("2017-01-09", None, date(2017, 1, 9)),
        ("2017-1-9", None, date(2017, 1, 9)),
        ("20170109", None, date(2017, 1, 9)),
        ("2017-01-09T09:05", None, datetime(2017, 1, 9, 9, 5)),
        ("2017-1-9 9:05", None, datetime(2017, 1, 9, 9, 5)),
        ("2017-01-09 09:05:07", None, datetime(2017, 1, 9, 9, 5, 7)),
        ("2017-01-09T09:05:07.250Z", None, datetime(2017, 1, 9, 9, 5, 7, 250000)),
        ("2017-01-09T23:30:00+01:00", None, datetime(2017, 1, 9, 23, 30)),
        ("2017-01-09 00:00:00.000", None, datetime(2017, 1, 9)),
        ("2017/01/09", None, date(2017, 1, 9)),
        ("9/1/2017", "%d/%m/%Y", date(2017, 1, 9)),
        ("09/01/2017 14:30", "%d/%m/%Y", datetime(2017, 1, 9, 14, 30)),
        ("2017-01-09", "%d/%m/%Y", date(2017, 1, 9)),
        ("09/01/2017 14:30", "%d/%m/%Y %H:%M", datetime(2017, 1, 9, 14, 30)),
    ],
)
def test_dates_and_datetimes_in_the_shapes_extracts_write(text, fmt, expected):
    got = parse_date(text, fmt)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text", ["2017-02-30", "2017-13-01", "yesterday", "09/01/2017", "17-1-9"])
def test_what_is_not_a_date_is_an_error(text):
    with pytest.raises(ValueError):
        parse_date(text)


def test_typed_values_pass_through_and_zones_are_dropped():
    from datetime import UTC

    assert as_date(date(2020, 1, 2)) == date(2020, 1, 2)
    assert as_date(datetime(2020, 1, 2, 3, 4, tzinfo=UTC)) == datetime(2020, 1, 2, 3, 4)


@pytest.mark.parametrize("fmt", ["%Y", "%Q-%m", "dd/mm/yyyy", "%H:%M"])
def test_a_format_that_cannot_read_a_whole_date_is_refused(fmt):
    with pytest.raises(ValueError):
        check_format(fmt)


def test_ages_count_whole_years_and_months_by_the_calendar():
    assert at_age(date(1950, 3, 1), 50, "years") == date(2000, 3, 1)
    assert at_age(date(1952, 2, 29), 1, "years") == date(1953, 2, 28)
    assert at_age(date(2000, 3, 1), -38, "years") == date(1962, 3, 1)
    assert at_age(date(2000, 1, 1), 10, "days") == date(2000, 1, 11)
