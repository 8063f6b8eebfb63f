"""A warehouse-style CSV extract of synthetic patients, shaped as real ones are written.

Mixed-case headers with stray spaces, unpadded dates, datetimes with `T` or a space,
with or without seconds and a zone, `NULL` for no value, and a wide vitals file whose
each row carries a blood pressure pair, a cholesterol and a smoking status, mapped by
four entries that share the file without naming themselves.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flip.synth import generate_site
from flip.synth.world import SMOKER_SNOMED, Patient
from tests.conftest import small_profile

#: The shapes a warehouse writes one datetime in, used row after row.
STAMPS = ("{d.year}-{d.month}-{d.day} 9:5", "{d:%Y-%m-%d}T09:05:00", "{d:%Y-%m-%d} 09:05:00Z")


def write_extract(folder: Path, n: int = 30, seed: int = 3) -> tuple[list[Patient], Path]:
    """Write patients.csv, vitals.csv and mapping.yaml; return the patients and the mapping."""
    patients = generate_site(small_profile("csv", n, name="warehouse"), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [" Patient_ID ,DOB , Sex"]
    for p in patients:
        sex = "NULL" if p.source_id.endswith("3") else p.sex[0].upper()
        lines.append(
            f"{p.source_id},{p.birth_date.year}-{p.birth_date.month}-{p.birth_date.day},{sex}"
        )
    (folder / "patients.csv").write_text("\n".join(lines) + "\n")
    lines = ["Vitals_ID,Patient_ID,Taken_At,SBP,DBP,Total_Chol,Smoking"]
    for i, p in enumerate(patients):
        stamp = STAMPS[i % len(STAMPS)].format(d=p.index_date)
        m = p.measurements
        sbp, dbp, chol = (m.get(k, "NULL") for k in ("sbp", "dbp", "total_chol"))
        smoking = "current" if p.smoker else "NULL"
        lines.append(f"V{i},{p.source_id},{stamp},{sbp},{dbp},{chol},{smoking}")
    (folder / "vitals.csv").write_text("\n".join(lines) + "\n")
    mapping = folder / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING, sort_keys=False))
    return patients, mapping


def _vital(code: str, column: str) -> dict:
    return {
        "file": "vitals.csv",
        "id": "vitals_id",
        "person": "patient_id",
        "code": {"value": code, "system": "http://loinc.org"},
        "date": {"column": "taken_at"},
        "value": column,
        "unit": {"value": "mmol/L" if column == "total_chol" else "mm[Hg]"},
        "default_table": "measurement",
    }


MAPPING = {
    "source": "warehouse-extract",
    "person": {
        "file": "patients.csv",
        "id": "patient_id",
        "birth_date": {"column": "dob"},
        "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
    },
    "events": [
        _vital("8480-6", "sbp"),
        _vital("8462-4", "dbp"),
        _vital("2093-3", "total_chol"),
        {
            "file": "vitals.csv",
            "id": "vitals_id",
            "person": "patient_id",
            "code": {
                "column": "smoking",
                "system": "http://snomed.info/sct",
                "values": {"current": SMOKER_SNOMED},
                "empty": "skip",
            },
            "date": {"column": "taken_at"},
            "default_table": "observation",
        },
    ],
}
