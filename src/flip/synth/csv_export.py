"""Write synthetic patients as a hospital CSV extract with local codes, plus its mapping file."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from flip.synth.world import CLINIC_NOTE_LOINC, CONDITIONS, MEASUREMENTS, SMOKER_SNOMED, Patient

#: The extract's own laboratory codes, as a hospital's lab system names them.
LOCAL_LAB_CODES = {name: f"LAB{i + 101}" for i, name in enumerate(MEASUREMENTS)}
#: Creatinine as this lab reports it: mg/dl (its own spelling of UCUM mg/dL), not umol/L.
CREATININE_UMOL_PER_MG_DL = 88.42
LOCAL_SOCIAL_CODES = {"smoker": "SMK-CUR"}


def write_csv_extract(site: str, patients: list[Patient], folder: Path) -> Path:
    """Write patients, diagnoses, labs, social history and letters as CSV; return the mapping."""
    folder.mkdir(parents=True, exist_ok=True)
    with _writer(folder / "patients.csv", ["patient_ref", "dob", "sex"]) as w:
        for p in patients:
            w.writerow([p.source_id, p.birth_date.strftime("%d/%m/%Y"), p.sex[0].upper()])
    with _writer(folder / "diagnoses.csv", ["diag_id", "patient_ref", "icd10", "diag_date"]) as w:
        for p in patients:
            for name, when in p.conditions.items():
                w.writerow(
                    [
                        f"{p.source_id}-{name}",
                        p.source_id,
                        CONDITIONS[name][1],
                        when.strftime("%d/%m/%Y"),
                    ]
                )
    with _writer(
        folder / "labs.csv", ["lab_id", "patient_ref", "test_code", "result", "units", "taken"]
    ) as w:
        for p in patients:
            for name, value in p.measurements.items():
                unit = MEASUREMENTS[name][1]
                if name == "creatinine":
                    value, unit = round(value / CREATININE_UMOL_PER_MG_DL, 4), "mg/dl"
                stamp = p.index_date.strftime("%Y-%m-%d") + " 09:30"
                w.writerow(
                    [
                        f"{p.source_id}-{name}",
                        p.source_id,
                        LOCAL_LAB_CODES[name],
                        value,
                        unit,
                        stamp,
                    ]
                )
    with _writer(folder / "social.csv", ["item_id", "patient_ref", "item", "recorded"]) as w:
        for p in patients:
            if p.smoker:
                w.writerow(
                    [
                        f"{p.source_id}-smk",
                        p.source_id,
                        "SMK-CUR",
                        p.index_date.strftime("%d/%m/%Y"),
                    ]
                )
    with _writer(folder / "letters.csv", ["letter_id", "patient_ref", "written", "body"]) as w:
        for p in patients:
            for number, (when, text) in enumerate(p.notes, start=1):
                w.writerow([f"{p.source_id}-L{number}", p.source_id, when.isoformat(), text])
    mapping_path = folder / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(_mapping(site), sort_keys=False))
    return mapping_path


class _writer:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.handle = path.open("w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.handle)
        self.csv.writerow(header)

    def __enter__(self):
        return self.csv

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _mapping(site: str) -> dict:
    lab_system = f"urn:{site}:lab"
    social_system = f"urn:{site}:social"
    return {
        "source": f"{site}-csv-extract",
        "person": {
            "file": "patients.csv",
            "id": "patient_ref",
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
        },
        "events": [
            {
                "file": "diagnoses.csv",
                "id": "diag_id",
                "person": "patient_ref",
                "code": {"column": "icd10", "system": "http://hl7.org/fhir/sid/icd-10"},
                "date": {"column": "diag_date", "format": "%d/%m/%Y"},
                "default_table": "condition_occurrence",
            },
            {
                "file": "labs.csv",
                "id": "lab_id",
                "person": "patient_ref",
                "code": {"column": "test_code", "system": lab_system},
                "date": {"column": "taken", "format": "%Y-%m-%d %H:%M"},
                "value": "result",
                "unit": {
                    "column": "units",
                    "values": {"mg/dl": "mg/dL"},
                    "convert": [
                        {
                            "code": LOCAL_LAB_CODES["creatinine"],
                            "from": "mg/dL",
                            "to": "umol/L",
                            "factor": CREATININE_UMOL_PER_MG_DL,
                        }
                    ],
                },
                "default_table": "measurement",
            },
            {
                "file": "social.csv",
                "id": "item_id",
                "person": "patient_ref",
                "code": {"column": "item", "system": social_system},
                "date": {"column": "recorded", "format": "%d/%m/%Y"},
                "default_table": "observation",
            },
            {
                "name": "letters",
                "file": "letters.csv",
                "id": "letter_id",
                "person": "patient_ref",
                "code": {"value": CLINIC_NOTE_LOINC, "system": "http://loinc.org"},
                "date": {"column": "written"},
                "text": "body",
                "default_table": "note",
            },
        ],
        "local_codes": {
            lab_system: {
                LOCAL_LAB_CODES[n]: {"system": "http://loinc.org", "code": MEASUREMENTS[n][0]}
                for n in MEASUREMENTS
            },
            social_system: {"SMK-CUR": {"system": "http://snomed.info/sct", "code": SMOKER_SNOMED}},
        },
    }
