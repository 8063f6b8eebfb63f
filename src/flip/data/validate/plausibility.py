"""Plausibility checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from datetime import date


def date_problem(when: date | None, birth: date | None, today: date) -> tuple[str, str] | None:
    """(rule, message) when an event date is missing, before birth or in the future; else None."""
    if when is None:
        return "conformance.date.missing", "the record has no date"
    if when > today:
        return "plausibility.future_date", f"date {when} is in the future"
    if birth is not None and when < birth:
        return "plausibility.before_birth", f"date {when} is before birth on {birth}"
    return None


def birth_problem(birth: date | None, today: date) -> tuple[str, str] | None:
    """(rule, message) when a birth date is missing, in the future or implausibly old; else None."""
    if birth is None:
        return "conformance.birth_date.missing", "the person has no birth date"
    if birth > today:
        return "plausibility.future_date", f"birth date {birth} is in the future"
    if birth.year < today.year - 125:
        return "plausibility.birth_date.too_old", f"birth date {birth} is over 125 years ago"
    return None
