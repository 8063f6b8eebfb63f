"""Plausibility checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from datetime import date, datetime

#: Measurement concept -> {UCUM unit: (lowest, highest) plausible value}. Outside the range,
#: or in a unit not listed, a measurement is quarantined. Concepts not listed pass.
PLAUSIBLE: dict[int, dict[str, tuple[float, float]]] = {
    3004249: {"mm[Hg]": (40, 300)},  # systolic blood pressure
    3012888: {"mm[Hg]": (20, 200)},  # diastolic blood pressure
    3027114: {"mmol/L": (0.5, 30), "mg/dL": (20, 1200)},  # total cholesterol
    3007070: {"mmol/L": (0.1, 6), "mg/dL": (4, 230)},  # HDL cholesterol
    3038553: {"kg/m2": (8, 120)},  # body mass index
    3004410: {"%": (2, 25)},  # HbA1c
    3016723: {"umol/L": (5, 3000), "mg/dL": (0.05, 35)},  # creatinine
    3019550: {"mmol/L": (90, 200)},  # sodium
    3023103: {"mmol/L": (1, 12)},  # potassium
    3000963: {"g/dL": (2, 25), "g/L": (20, 250)},  # haemoglobin
}


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
    """(rule, message) when a measurement's unit or value is implausible for its concept."""
    ranges = PLAUSIBLE.get(concept_id)
    if ranges is None or value is None:
        return None
    if unit not in ranges:
        expected = ", ".join(sorted(ranges))
        return (
            "plausibility.unit_mismatch",
            f"unit {unit!r} is not one of {expected} for concept {concept_id}",
        )
    low, high = ranges[unit]
    if not low <= value <= high:
        return (
            "plausibility.value_range",
            f"{value} {unit} is outside {low}-{high} for concept {concept_id}",
        )
    return None
