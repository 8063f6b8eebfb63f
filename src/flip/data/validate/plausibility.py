"""Plausibility checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from datetime import date, datetime

from flip.data.terminology.units import CANONICAL, harmonise

#: Measurement concept -> (lowest, highest) plausible value in the concept's canonical unit
#: (flip.data.terminology.units.CANONICAL: every concept there has a range here). A value is
#: converted to that unit before it is compared; outside the range, or in a unit FLIP reads
#: that does not convert, a measurement is quarantined. A value with no unit, or a unit FLIP
#: cannot read, is not compared (it loads with unit_concept_id 0). Other concepts pass.
PLAUSIBLE: dict[int, tuple[float, float]] = {
    3004501: (9, 1530),  # glucose, mg/dL (0.5-85 mmol/L)
    3000483: (9, 1530),  # glucose in blood, mg/dL (0.5-85 mmol/L)
    3013826: (0.5, 85),  # glucose, mmol/L
    3016723: (0.05, 35),  # creatinine, mg/dL
    3051825: (0.05, 35),  # creatinine in blood, mg/dL
    3020564: (5, 3000),  # creatinine, umol/L
    40762887: (5, 3000),  # creatinine in blood, umol/L
    3027114: (20, 1200),  # total cholesterol, mg/dL
    3019900: (0.5, 30),  # total cholesterol, mmol/L
    3007070: (4, 230),  # HDL cholesterol, mg/dL
    3028437: (1, 1000),  # LDL cholesterol, mg/dL
    3028288: (1, 1000),  # LDL cholesterol by calculation, mg/dL
    3001308: (0.03, 26),  # LDL cholesterol, mmol/L
    3022192: (5, 20000),  # triglycerides, mg/dL
    3024128: (0, 60),  # total bilirubin, mg/dL
    3006140: (0, 1000),  # total bilirubin, umol/L
    3006906: (2, 20),  # calcium, mg/dL
    3015377: (0.5, 5),  # calcium, mmol/L
    3019550: (90, 200),  # sodium, mmol/L
    3023103: (1, 12),  # potassium, mmol/L
    3014576: (50, 160),  # chloride, mmol/L
    3000963: (2, 25),  # haemoglobin, g/dL
    3024561: (5, 70),  # albumin, g/L
    3020630: (20, 150),  # total protein, g/L
    3020460: (0, 700),  # C reactive protein, mg/L
    3004410: (2, 25),  # HbA1c, %
    3005673: (2, 25),  # HbA1c by HPLC, %
    3020891: (25, 45),  # body temperature, Cel
    3006322: (25, 45),  # oral temperature, Cel
    3025315: (0.2, 500),  # body weight, kg
    3036277: (20, 280),  # body height, cm
    3004249: (40, 300),  # systolic blood pressure, mm[Hg]
    3012888: (20, 200),  # diastolic blood pressure, mm[Hg]
    3027018: (10, 350),  # heart rate, /min
    3024171: (2, 100),  # respiratory rate, /min
    3038553: (8, 120),  # body mass index, kg/m2
    3024929: (1, 3000),  # platelets, 10*3/uL
    3000905: (0.05, 1000),  # leukocytes, 10*3/uL
    3006923: (0, 50000),  # alanine aminotransferase, U/L
    3013721: (0, 50000),  # aspartate aminotransferase, U/L
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
    if stored.code is None:
        return None
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
