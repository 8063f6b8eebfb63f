"""Write synthetic patients as a hospital CSV extract with local codes, plus its mapping file.

Each patient row carries the NHS number their FHIR Patient carries, named as the person
`identifier` in the mapping: a site whose person identifier is the NHS number finds the
same person in both exports.

The extract carries the site's real-world shapes (`flip.synth.shapes`): headers in
mixed case with stray spaces, `NULL` for no value, dates with and without zero
padding, result times written three ways, a bilirubin below the detection limit as
`<5`, a patient row sent twice, and, when asked, a result no body can have.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml

from flip.synth.shapes import (
    IMPLAUSIBLE_RULE,
    PatientShapes,
    Shapes,
    Truth,
    censored,
    day,
    nhs_number,
    plan_patient,
    stamp,
)
from flip.synth.world import CLINIC_NOTE_LOINC, CONDITIONS, MEASUREMENTS, SMOKER_SNOMED, Patient

#: The extract's own laboratory codes, as a hospital's lab system names them.
LOCAL_LAB_CODES = {name: f"LAB{i + 101}" for i, name in enumerate(MEASUREMENTS)}
#: Creatinine as this lab reports it: mg/dl (its own spelling of UCUM mg/dL), not umol/L.
CREATININE_UMOL_PER_MG_DL = 88.42
LOCAL_SOCIAL_CODES = {"smoker": "SMK-CUR"}
#: Each file's columns as the mapping names them, and as a messy extract writes them.
HEADERS = {
    "patients.csv": (
        ["patient_ref", "nhs_number", "dob", "sex", "died"],
        ["Patient_Ref", "NHS_Number ", " DOB", "Sex ", "DIED"],
    ),
    "diagnoses.csv": (
        ["diag_id", "patient_ref", "icd10", "diag_date"],
        ["Diag_ID", "PATIENT_REF", "ICD10 ", "Diag_Date"],
    ),
    "labs.csv": (
        ["lab_id", "patient_ref", "test_code", "result", "units", "taken"],
        ["Lab_ID", " Patient_Ref", "Test_Code", "Result", "Units ", "Taken"],
    ),
    "social.csv": (
        ["item_id", "patient_ref", "item", "recorded"],
        ["Item_ID", "Patient_Ref", "ITEM", " Recorded"],
    ),
    "letters.csv": (
        ["letter_id", "patient_ref", "written", "body"],
        ["Letter_ID", "Patient_Ref", "Written", "Body"],
    ),
}


def write_csv_extract_truth(
    site: str,
    patients: list[Patient],
    folder: Path,
    shapes: Shapes | None = None,
    seed: int = 0,
) -> tuple[Path, Truth]:
    """Write patients, diagnoses, labs, social history and letters as CSV; return the mapping
    and what a faithful ingest of the extract must do."""
    shapes = shapes or Shapes.none()
    folder.mkdir(parents=True, exist_ok=True)
    truth = Truth(persons=len(patients))
    plans = {
        p.source_id: plan_patient(shapes, site, int(p.source_id[3:]), p.index_date, seed)
        for p in patients
    }
    none = "NULL" if shapes.null_strings else ""
    with _writer(folder, "patients.csv", shapes) as w:
        rows = [
            [
                p.source_id,
                nhs_number(site, int(p.source_id[3:])),
                day(p.birth_date, plans[p.source_id].padded),
                p.sex[0].upper(),
                none,
            ]
            for p in patients
        ]
        w.writerows(rows)
        for p, row in zip(patients, rows, strict=True):
            if plans[p.source_id].resent:
                w.writerow(row)
                truth.resent += 1
    with _writer(folder, "diagnoses.csv", shapes) as w:
        for p in patients:
            for name, when in p.conditions.items():
                padded = plans[p.source_id].padded
                w.writerow(
                    [f"{p.source_id}-{name}", p.source_id, CONDITIONS[name][1], day(when, padded)]
                )
    with _writer(folder, "labs.csv", shapes) as w:
        for p in patients:
            w.writerows(_lab_rows(p, plans[p.source_id], shapes, truth))
    with _writer(folder, "social.csv", shapes) as w:
        for p in patients:
            if p.smoker:
                recorded = day(p.index_date, plans[p.source_id].padded)
                w.writerow([f"{p.source_id}-smk", p.source_id, "SMK-CUR", recorded])
    with _writer(folder, "letters.csv", shapes) as w:
        for p in patients:
            at = plans[p.source_id].at
            for number, (when, text) in enumerate(p.notes, start=1):
                written = when.isoformat()
                if at is not None:
                    moment = datetime.combine(when, at) + timedelta(minutes=40)
                    written = stamp(moment, "iso")
                    truth.times[f"letters/{p.source_id}-L{number}"] = moment
                w.writerow([f"{p.source_id}-L{number}", p.source_id, written, text])
    mapping_path = folder / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(_mapping(site), sort_keys=False))
    return mapping_path, truth


def _lab_rows(p: Patient, plan: PatientShapes, shapes: Shapes, truth: Truth) -> list[list]:
    """One patient's lab rows: at baseline, taken on the index date at the plan's time of
    day; at the review that ends follow-up, on that day at the same time."""
    rows = []
    for when, values in ((p.index_date, p.measurements), (p.follow_up_end, p.review)):
        taken, moment = _taken(when, plan)
        for name, value in values.items():
            unit = MEASUREMENTS[name][1]
            if name == "creatinine":
                value, unit = round(value / CREATININE_UMOL_PER_MG_DL, 4), "mg/dl"
            comparator, value = censored(name, value, shapes)
            key = f"{p.source_id}-{name}"
            cell = f"{comparator or ''}{value}"
            rows.append([key, p.source_id, LOCAL_LAB_CODES[name], cell, unit, taken])
            if comparator:
                truth.operators[f"labs.csv/{key}"] = comparator
            if moment is not None:
                truth.times[f"labs.csv/{key}"] = moment
    if plan.implausible:
        slip = [f"{p.source_id}-sbp-slip", p.source_id, LOCAL_LAB_CODES["sbp"], "1300", "mm[Hg]"]
        rows.append([*slip, _taken(p.index_date, plan)[0]])
        truth.quarantined[IMPLAUSIBLE_RULE] += 1
    return rows


def _taken(when: date, plan: PatientShapes) -> tuple[str, datetime | None]:
    """(the cell, the wall-clock time it names) of a result taken on `when`."""
    if plan.at is None:
        written = when.isoformat() if plan.padded else f"{when.year}-{when.month}-{when.day}"
        return written, None
    moment = datetime.combine(when, plan.at)
    if plan.stamp != "iso":
        moment = moment.replace(second=0)
    return stamp(moment, plan.stamp), moment


class _writer:
    def __init__(self, folder: Path, name: str, shapes: Shapes) -> None:
        self.handle = (folder / name).open("w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.handle)
        tidy, messy = HEADERS[name]
        self.csv.writerow(messy if shapes.messy_headers else tidy)

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
            "identifier": "nhs_number",
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
            "death_date": {"column": "died", "format": "%d/%m/%Y"},
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
