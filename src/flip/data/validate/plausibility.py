"""Plausibility checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from datetime import date, datetime

from flip.data.terminology.units import CANONICAL, harmonise

#: Measurement concept -> (lowest, highest) plausible value in the concept's canonical unit
#: (flip.data.terminology.units.CANONICAL). A value is converted to that unit before it is
#: compared; outside the range, or in a unit that does not convert, a measurement is
#: quarantined. Concepts not listed pass.
PLAUSIBLE: dict[int, tuple[float, float]] = {
    3004249: (40, 300),  # systolic blood pressure, mm[Hg]
    3012888: (20, 200),  # diastolic blood pressure, mm[Hg]
    3027114: (20, 1200),  # total cholesterol, mg/dL
    3019900: (0.5, 30),  # total cholesterol, mmol/L
    3007070: (4, 230),  # HDL cholesterol, mg/dL
    3038553: (8, 120),  # body mass index, kg/m2
    3004410: (2, 25),  # HbA1c, %
    3016723: (0.05, 35),  # creatinine, mg/dL
    3020564: (5, 3000),  # creatinine, umol/L
    3019550: (90, 200),  # sodium, mmol/L
    3023103: (1, 12),  # potassium, mmol/L
    3000963: (2, 25),  # haemoglobin, g/dL
    3004501: (10, 1500),  # glucose, mg/dL
    3020891: (25, 45),  # body temperature, Cel
    3025315: (0.2, 500),  # body weight, kg
    3036277: (20, 280),  # body height, cm
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
    """(rule, message) when a measurement's unit or value is implausible for its concept,
    compared in the concept's canonical unit."""
    bounds = PLAUSIBLE.get(concept_id)
    if bounds is None or value is None:
        return None
    canonical = CANONICAL[concept_id][1]
    stored = harmonise(concept_id, unit)
    if stored.code != canonical:
        return (
            "plausibility.unit_mismatch",
            f"unit {unit!r} does not convert to {canonical} for concept {concept_id}",
        )
    low, high = bounds
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
