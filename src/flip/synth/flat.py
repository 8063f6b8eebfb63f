"""Flat modelling tables, one CSV per hospital, as research extracts come: messy on purpose.

Numbers, booleans written three ways, string categories, about 5% missing
values ("?" or empty), a patient id column, and a graded outcome `num` (0 = no
major cardiovascular event in 5 years, 1-3 = an event, by severity), so
`--positive "num>0"` makes the binary target.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flip.synth.world import Patient, SiteProfile, generate_site

HEADER = [
    "patient_id",
    "age",
    "sex",
    "smoker",
    "diabetes",
    "sbp",
    "chol",
    "hdl",
    "bmi",
    "creatinine",
    "chest_pain_type",
    "num",
]


def _cell(values: dict[str, float], key: str, rng: np.random.Generator, fmt: str = "{:.1f}") -> str:
    value = values.get(key)
    return "?" if value is None or rng.random() < 0.05 else fmt.format(value)


def _row(site: str, p: Patient, rng: np.random.Generator) -> list[str]:
    m = p.measurements
    age = (p.index_date - p.birth_date).days / 365.25
    return [
        f"{site[:2]}-{p.source_id}",
        f"{age:.0f}",
        p.sex[0].upper(),
        "yes" if p.smoker else ("" if rng.random() < 0.05 else "no"),
        "TRUE" if "diabetes" in p.conditions else "FALSE",
        _cell(m, "sbp", rng),
        _cell(m, "total_chol", rng),
        _cell(m, "hdl", rng, "{:.2f}"),
        _cell(m, "bmi", rng),
        _cell(m, "creatinine", rng),
        str(rng.choice(["typical", "atypical", "non-anginal", "asymptomatic"])),
        str(int(rng.integers(1, 4)) if p.mace else 0),
    ]


def write_table(profile: SiteProfile, path: Path, seed: int = 0) -> Path:
    """Write one hospital's flat table to `path`."""
    rng = np.random.default_rng([seed, 7, *profile.name.encode()])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for p in generate_site(profile, seed):
            out.writerow(_row(profile.name, p, rng))
    return path
