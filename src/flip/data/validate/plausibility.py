"""Plausibility checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from datetime import date, datetime

from flip.data.terminology.units import CANONICAL, Harmonised, harmonise


def date_problem(when: date | None, birth: date | None, today: date) -> tuple[str, str] | None:
    """(rule, message) when an event date is missing, before birth or in the future; else None."""
    if when is None:
        return "conformance.date.missing", "the record has no date"
    if isinstance(when, datetime):
        when = when.date()
    if isinstance(birth, datetime):
        birth = birth.date()
    if when > today:
        return "plausibility.future_date", f"date {when} is in the future"
    if birth is not None and when < birth:
        return "plausibility.before_birth", f"date {when} is before birth on {birth}"
    return None


def birth_problem(birth: date | None, today: date) -> tuple[str, str] | None:
    """(rule, message) when a birth date is missing, in the future or implausibly old; else None."""
    if birth is None:
        return "conformance.birth_date.missing", "the person has no birth date"
    if isinstance(birth, datetime):
        birth = birth.date()
    if birth > today:
        return "plausibility.future_date", f"birth date {birth} is in the future"
    if birth.year < today.year - 125:
        return "plausibility.birth_date.too_old", f"birth date {birth} is over 125 years ago"
    return None


def value_problem(concept_id: int, value: float | None, unit: str | None) -> tuple[str, str] | None:
    """(rule, message) when a measurement's unit or value is implausible for its concept,
    compared in the concept's canonical unit (units.CANONICAL: its range there). Outside the
    range, or in a unit FLIP reads that does not convert, a measurement is quarantined; a
    value with no unit, or one FLIP cannot read, is not compared. Other concepts pass."""
    found = CANONICAL.get(concept_id)
    if found is None or value is None:
        return None
    canonical = found.unit
    stored = harmonise(concept_id, unit)
    if stored.code is None:
        return None
    if stored.code != canonical:
        return (
            "plausibility.unit_mismatch",
            f"unit {unit!r} does not convert to {canonical} for concept {concept_id}",
        )
    low, high = found.low, found.high
    converted = stored.apply(value)
    if not low <= converted <= high:
        shown = f"{value} {unit}" + (
            f" (= {converted:.4g} {canonical})" if stored.converted else ""
        )
        return (
            "plausibility.value_range",
            f"{shown} is outside {low}-{high} {canonical} for concept {concept_id}",
        )
    return None


def value_bounds(concept_id: int, unit: str | None) -> tuple[Harmonised, float, float] | None:
    """How `value_problem` judges a value of `concept_id` sent in `unit`: (its conversion, low,
    high) when the converted value must fall in [low, high] (a unit that does not convert
    has an empty range); None when it never objects. Worked out once per (concept, unit),
    it lets a block of measurements be screened without a call per value."""
    found = CANONICAL.get(concept_id)
    if found is None:
        return None
    stored = harmonise(concept_id, unit)
    if stored.code is None:
        return None
    if stored.code != found.unit:
        return stored, float("inf"), float("-inf")
    return stored, found.low, found.high
