"""Units: lab spellings -> UCUM -> OMOP unit concepts, and one canonical unit per measurement.

Concept ids are OHDSI's (vocabulary UCUM), checked against the OHDSI Data Quality Dashboard's
concept-level threshold files, which name each unit concept next to the measurements it fits.
Conversion factors and their sources are listed in docs/units.md.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

#: UCUM code -> (OMOP concept id, concept name): the units labs commonly send.
UCUM_CONCEPTS: dict[str, tuple[int, str]] = {
    "%": (8554, "percent"),
    "mg/dL": (8840, "milligram per deciliter"),
    "mg/L": (8751, "milligram per liter"),
    "g/dL": (8713, "gram per deciliter"),
    "g/L": (8636, "gram per liter"),
    "ug/dL": (8837, "microgram per deciliter"),
    "ug/L": (8748, "microgram per liter"),
    "ng/dL": (8817, "nanogram per deciliter"),
    "ng/mL": (8842, "nanogram per milliliter"),
    "ng/L": (8725, "nanogram per liter"),
    "pg/mL": (8845, "picogram per milliliter"),
    "mg/mL": (8861, "milligram per milliliter"),
    "ug/mL": (8859, "microgram per milliliter"),
    "mmol/L": (8753, "millimole per liter"),
    "umol/L": (8749, "micromole per liter"),
    "nmol/L": (8736, "nanomole per liter"),
    "pmol/L": (8729, "picomole per liter"),
    "mmol/mol": (9579, "millimole per mole"),
    "meq/L": (9557, "milliequivalent per liter"),
    "U/L": (8645, "unit per liter"),
    "[IU]/L": (8923, "international unit per liter"),
    "U/mL": (8763, "unit per milliliter"),
    "[IU]/mL": (8985, "international unit per milliliter"),
    "u[IU]/mL": (9093, "micro-international unit per milliliter"),
    "10*9/L": (9444, "billion per liter"),
    "10*3/uL": (8848, "thousand per microliter"),
    "10*3/mm3": (8961, "thousand per cubic millimeter"),
    "10*6/uL": (8815, "million per microliter"),
    "10*12/L": (8734, "trillion per liter"),
    "/uL": (8647, "per microliter"),
    "/mm3": (8785, "per cubic millimeter"),
    "/[HPF]": (8786, "per high power field"),
    "fL": (8583, "femtoliter"),
    "pg": (8564, "picogram"),
    "L/L": (44777604, "liter per liter"),
    "mm/h": (8752, "millimeter per hour"),
    "s": (8555, "second"),
    "{ratio}": (8523, "ratio"),
    "mm[Hg]": (8876, "millimeter mercury column"),
    "kPa": (44777602, "kilopascal"),
    "/min": (8541, "per minute"),
    "Cel": (586323, "degree Celsius"),
    "[degF]": (9289, "degree Fahrenheit"),
    "kg": (9529, "kilogram"),
    "g": (8504, "gram"),
    "mg": (8576, "milligram"),
    "[lb_av]": (8739, "pound (US)"),
    "[oz_av]": (9373, "ounce (avoirdupois)"),
    "cm": (8582, "centimeter"),
    "mm": (8588, "millimeter"),
    "m": (9546, "meter"),
    "[in_i]": (9327, "inch (international)"),
    "[in_us]": (9330, "inch (US)"),
    "m2": (8617, "square meter"),
    "kg/m2": (9531, "kilogram per square meter"),
    "mL": (8587, "milliliter"),
    "L": (8519, "liter"),
    "mL/min": (8795, "milliliter per minute"),
    "mL/min/{1.73_m2}": (720870, "milliliter per minute per 1.73 square meter"),
    "mg/g": (8723, "milligram per gram"),
    "[pH]": (8482, "pH"),
    "mosm/kg": (8862, "milliosmole per kilogram"),
    "m[IU]/L": (9040, "milli-international unit per liter"),
    "mU/L": (44777578, "milliunit per liter"),
    "kU/L": (8810, "kilounit per liter"),
    "mg/mmol": (44777612, "milligram per millimole"),
    "mg/g{creat}": (9017, "milligram per gram of creatinine"),
    "{cells}/uL": (8784, "cells per microliter"),
    "L/min": (8698, "liter per minute"),
    "min": (8550, "minute"),
    "h": (8505, "hour"),
    "d": (8512, "day"),
}

#: Spellings labs send -> UCUM code. Matched exactly first, then ignoring case (where that is
#: unambiguous: "G/l" is 10*9/L but "g/l" is g/L, so both are listed exactly).
ALIASES: dict[str, str] = {
    "G/L": "10*9/L",
    "G/l": "10*9/L",
    "g/l": "g/L",
    "mcg/L": "ug/L",
    "mcg/dL": "ug/dL",
    "mcg/mL": "ug/mL",
    "gm/dL": "g/dL",
    "g%": "g/dL",
    "mg%": "mg/dL",
    "gm/L": "g/L",
    "uIU/mL": "u[IU]/mL",
    "T/L": "10*12/L",
    "T/l": "10*12/L",
    "/HPF": "/[HPF]",
    "mcmol/L": "umol/L",
    "mEq/L": "meq/L",
    "IU/L": "[IU]/L",
    "[U]/L": "U/L",
    "K/uL": "10*3/uL",
    "10*3/ul": "10*3/uL",
    "10*6/ul": "10*6/uL",
    "mmHg": "mm[Hg]",
    "bpm": "/min",
    "beats/min": "/min",
    "beats/minute": "/min",
    "{beats}/min": "/min",
    "breaths/min": "/min",
    "{breaths}/min": "/min",
    "min-1": "/min",
    "degC": "Cel",
    "°C": "Cel",
    "C": "Cel",
    "celsius": "Cel",
    "degF": "[degF]",
    "°F": "[degF]",
    "fahrenheit": "[degF]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "oz": "[oz_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
    "kg/m²": "kg/m2",
    "kg/m^2": "kg/m2",
    "percent": "%",
    "ratio": "{ratio}",
    "mm/hr": "mm/h",
    "sec": "s",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/(173.10*-2.m2)": "mL/min/{1.73_m2}",
    "mosmol/kg": "mosm/kg",
    "pH": "[pH]",
    "mIU/L": "m[IU]/L",
    "cells/uL": "{cells}/uL",
    "M/uL": "10*6/uL",
}


def _caseless() -> dict[str, str]:
    """Every spelling folded to lower case, minus those that fold onto two different units."""
    found: dict[str, set[str]] = {}
    for spelling, code in (*((u, u) for u in UCUM_CONCEPTS), *ALIASES.items()):
        found.setdefault(spelling.lower(), set()).add(code)
    return {folded: codes.pop() for folded, codes in found.items() if len(codes) == 1}


_CASELESS = _caseless()

#: "x10^9/L", "10^9/l", "10E9/L", "x 10*9 /L" -> "10*9/L" (the power-of-ten count units).
_POWER = re.compile("^[x\u00d7*]?10(?:\\^|\\*|e|E)(\\d+)(/.*)$")


def normalize_unit(text: str | None) -> str | None:
    """The UCUM code of a unit as a lab spelled it, or None when the spelling is unknown."""
    if not text:
        return None
    cleaned = "".join(unicodedata.normalize("NFKC", text).split()).replace("μ", "u")
    if not cleaned:
        return None
    power = _POWER.match(cleaned)
    if power:
        cleaned = f"10*{power.group(1)}{power.group(2)}"
    if cleaned in UCUM_CONCEPTS:
        return cleaned
    if cleaned in ALIASES:
        return ALIASES[cleaned]
    found = _CASELESS.get(cleaned.lower())
    bare = _ANNOTATION.sub("", cleaned)
    if found is None and bare and bare != cleaned:  # UCUM: `{…}` annotates, means 1
        return normalize_unit(bare)
    return found


#: A UCUM annotation (`%{HbA1c}`, `mg/dL{fasting}`), which changes no unit.
_ANNOTATION = re.compile(r"\{[^{}]*\}")


def unit_concept_id(code: str | None) -> int:
    """The OMOP concept id of a UCUM code from FLIP's own table, or 0."""
    found = UCUM_CONCEPTS.get(code or "")
    return found[0] if found else 0


@dataclass(frozen=True)
class Analyte:
    """What one substance or quantity can be reported in: unit -> (scale, offset) to `base`."""

    name: str
    base: str
    units: dict[str, tuple[float, float]]


def _molar(name: str, grams_per_mol: float) -> Analyte:
    """A substance with a molar mass: mass and substance concentrations convert both ways
    (through mmol/L)."""
    mmol_per_mg_dl = 10 / grams_per_mol
    units = {
        "mmol/L": (1.0, 0.0),
        "umol/L": (1e-3, 0.0),
        "mg/dL": (mmol_per_mg_dl, 0.0),
        "mg/L": (mmol_per_mg_dl / 10, 0.0),
        "g/L": (mmol_per_mg_dl * 100, 0.0),
    }
    return Analyte(name, "mmol/L", units)


def _hemoglobin() -> Analyte:
    """Haemoglobin, also sent in mmol/L (of the Fe-carrying monomer, M = 16,114.5 g/mol)."""
    mmol = 16114.5 / 10_000
    units = {"g/dL": (1.0, 0.0), "g/L": (0.1, 0.0), "mg/dL": (1e-3, 0.0), "mmol/L": (mmol, 0.0)}
    return Analyte("hemoglobin", "g/dL", units)


#: Analytes whose factors are known; molar masses from PubChem (see docs/units.md).
ANALYTES: dict[str, Analyte] = {
    a.name: a
    for a in (
        _molar("glucose", 180.16),
        _molar("creatinine", 113.12),
        _molar("cholesterol", 386.65),
        _molar("triglycerides", 885.7),
        _molar("bilirubin", 584.66),
        _molar("calcium", 40.078),
        Analyte("electrolyte", "mmol/L", {"mmol/L": (1.0, 0.0), "meq/L": (1.0, 0.0)}),
        Analyte("protein", "g/L", {"g/L": (1.0, 0.0), "g/dL": (10.0, 0.0), "mg/dL": (0.01, 0.0)}),
        _hemoglobin(),
        Analyte("crp", "mg/L", {"mg/L": (1.0, 0.0), "mg/dL": (10.0, 0.0)}),
        Analyte("hba1c", "%", {"%": (1.0, 0.0), "mmol/mol": (0.09148, 2.152)}),
        Analyte("temperature", "Cel", {"Cel": (1.0, 0.0), "[degF]": (5 / 9, -160 / 9)}),
        Analyte(
            "mass",
            "kg",
            {
                "kg": (1.0, 0.0),
                "g": (1e-3, 0.0),
                "[lb_av]": (0.45359237, 0.0),
                "[oz_av]": (0.028349523125, 0.0),
            },
        ),
        Analyte(
            "length",
            "cm",
            {
                "cm": (1.0, 0.0),
                "mm": (0.1, 0.0),
                "m": (100.0, 0.0),
                "[in_i]": (2.54, 0.0),
                "[in_us]": (100 / 39.37, 0.0),
            },
        ),
        Analyte("pressure", "mm[Hg]", {"mm[Hg]": (1.0, 0.0), "kPa": (760 / 101.325, 0.0)}),
        Analyte("rate", "/min", {"/min": (1.0, 0.0)}),
        Analyte("bmi", "kg/m2", {"kg/m2": (1.0, 0.0)}),
        Analyte(
            "cell_count",
            "10*9/L",
            {
                "10*9/L": (1.0, 0.0),
                "10*3/uL": (1.0, 0.0),
                "10*3/mm3": (1.0, 0.0),
                "/uL": (1e-3, 0.0),
                "/mm3": (1e-3, 0.0),
            },
        ),
        Analyte("enzyme", "U/L", {"U/L": (1.0, 0.0), "[IU]/L": (1.0, 0.0)}),
    )
}


class Canonical(NamedTuple):
    """A measurement concept's analyte, canonical unit, and lowest and highest plausible
    value in that unit (validate.plausibility quarantines a value outside them)."""

    analyte: str
    unit: str
    low: float
    high: float


#: Measurement concept -> its analyte, canonical unit and plausible range: one unit per
#: concept, the one its LOINC property names (a [Mass/volume] concept is kept in mg/dL, a
#: [Moles/volume] one in mmol/L). The one table of both unit harmonisation and plausibility.
CANONICAL: dict[int, Canonical] = {
    # Glucose [Mass/volume] in Serum or Plasma (2345-7)
    3004501: Canonical("glucose", "mg/dL", 9, 1530),
    # Glucose [Mass/volume] in Blood (2339-0)
    3000483: Canonical("glucose", "mg/dL", 9, 1530),
    # Glucose [Moles/volume] in Serum or Plasma (14749-6)
    3013826: Canonical("glucose", "mmol/L", 0.5, 85),
    # Creatinine [Mass/volume] in Serum or Plasma (2160-0)
    3016723: Canonical("creatinine", "mg/dL", 0.05, 35),
    # Creatinine [Moles/volume] in Serum or Plasma (14682-9)
    3020564: Canonical("creatinine", "umol/L", 5, 3000),
    # Creatinine [Mass/volume] in Blood
    3051825: Canonical("creatinine", "mg/dL", 0.05, 35),
    # Creatinine [Moles/volume] in Blood
    40762887: Canonical("creatinine", "umol/L", 5, 3000),
    # Cholesterol [Mass/volume] in Serum or Plasma (2093-3)
    3027114: Canonical("cholesterol", "mg/dL", 20, 1200),
    # Cholesterol [Moles/volume] in Serum or Plasma (14647-2)
    3019900: Canonical("cholesterol", "mmol/L", 0.5, 30),
    # Cholesterol in HDL [Mass/volume] (2085-9)
    3007070: Canonical("cholesterol", "mg/dL", 4, 230),
    # Cholesterol in LDL [Mass/volume] (18262-6)
    3028437: Canonical("cholesterol", "mg/dL", 1, 1000),
    # Cholesterol in LDL [Mass/volume] by calculation (13457-7)
    3028288: Canonical("cholesterol", "mg/dL", 1, 1000),
    # Cholesterol in LDL [Moles/volume] (22748-8)
    3001308: Canonical("cholesterol", "mmol/L", 0.03, 26),
    # Triglyceride [Mass/volume] in Serum or Plasma (2571-8)
    3022192: Canonical("triglycerides", "mg/dL", 5, 20000),
    # Bilirubin.total [Mass/volume] (1975-2)
    3024128: Canonical("bilirubin", "mg/dL", 0, 60),
    # Bilirubin.total [Moles/volume] (14631-6)
    3006140: Canonical("bilirubin", "umol/L", 0, 1000),
    # Calcium [Mass/volume] in Serum or Plasma (17861-6)
    3006906: Canonical("calcium", "mg/dL", 2, 20),
    # Calcium [Moles/volume] in Serum or Plasma (2000-8)
    3015377: Canonical("calcium", "mmol/L", 0.5, 5),
    # Sodium [Moles/volume] (2951-2)
    3019550: Canonical("electrolyte", "mmol/L", 90, 200),
    # Potassium [Moles/volume] (2823-3)
    3023103: Canonical("electrolyte", "mmol/L", 1, 12),
    # Chloride [Moles/volume] (2075-0)
    3014576: Canonical("electrolyte", "mmol/L", 50, 160),
    # Hemoglobin [Mass/volume] in Blood (718-7)
    3000963: Canonical("hemoglobin", "g/dL", 2, 25),
    # Albumin [Mass/volume] in Serum or Plasma (1751-7)
    3024561: Canonical("protein", "g/L", 5, 70),
    # Protein [Mass/volume] in Serum or Plasma (2885-2)
    3020630: Canonical("protein", "g/L", 20, 150),
    # C reactive protein [Mass/volume] (1988-5)
    3020460: Canonical("crp", "mg/L", 0, 700),
    # Hemoglobin A1c/Hemoglobin.total in Blood (4548-4)
    3004410: Canonical("hba1c", "%", 2, 25),
    # Hemoglobin A1c/Hemoglobin.total in Blood by HPLC (17856-6)
    3005673: Canonical("hba1c", "%", 2, 25),
    # Body temperature (8310-5)
    3020891: Canonical("temperature", "Cel", 25, 45),
    # Oral temperature (8331-1)
    3006322: Canonical("temperature", "Cel", 25, 45),
    # Body weight (29463-7)
    3025315: Canonical("mass", "kg", 0.2, 500),
    # Body height (8302-2)
    3036277: Canonical("length", "cm", 20, 280),
    # Systolic blood pressure (8480-6)
    3004249: Canonical("pressure", "mm[Hg]", 40, 300),
    # Diastolic blood pressure (8462-4)
    3012888: Canonical("pressure", "mm[Hg]", 20, 200),
    # Heart rate (8867-4)
    3027018: Canonical("rate", "/min", 10, 350),
    # Respiratory rate (9279-1)
    3024171: Canonical("rate", "/min", 2, 100),
    # Body mass index (39156-5)
    3038553: Canonical("bmi", "kg/m2", 8, 120),
    # Platelets [#/volume] in Blood by Automated count (777-3)
    3024929: Canonical("cell_count", "10*3/uL", 1, 3000),
    # Leukocytes [#/volume] in Blood by Automated count (6690-2)
    3000905: Canonical("cell_count", "10*3/uL", 0.05, 1000),
    # Alanine aminotransferase (1742-6)
    3006923: Canonical("enzyme", "U/L", 0, 50000),
    # Aspartate aminotransferase (1920-8)
    3013721: Canonical("enzyme", "U/L", 0, 50000),
}


@dataclass(frozen=True)
class Harmonised:
    """How one (concept, unit) is stored: its UCUM code, and value -> value * scale + offset."""

    code: str | None
    scale: float = 1.0
    offset: float = 0.0
    converted: bool = False

    def apply(self, value: float) -> float:
        """The value in the stored unit, a converted one cut to 12 significant digits (no float
        noise such as 228.09999999999997; the factors themselves carry at most 10)."""
        if not self.converted:
            return value
        return float(f"{value * self.scale + self.offset:.12g}")


@lru_cache(maxsize=8192)
def harmonise(concept_id: int, unit: str | None) -> Harmonised:
    """How a value of `concept_id` sent in `unit` is stored: in its concept's canonical unit
    where the analyte's factor is known, else as sent (its spelling normalised to UCUM)."""
    code = normalize_unit(unit)
    canonical = CANONICAL.get(concept_id)
    if code is None or canonical is None:
        return Harmonised(code)
    analyte, target, _, _ = canonical
    units = ANALYTES[analyte].units
    if code == target or code not in units:
        return Harmonised(code)
    (scale_in, offset_in), (scale_out, offset_out) = units[code], units[target]
    scale = scale_in / scale_out
    return Harmonised(target, scale, (offset_in - offset_out) / scale_out, True)


def to_canonical(concept_id: int, value: float, unit: str | None) -> tuple[float, str | None]:
    """`value` in its concept's canonical unit, and that unit (or the value as sent, normalised)."""
    h = harmonise(concept_id, unit)
    return h.apply(value), h.code
