"""A dermatology site's warehouse extract: CSV tables with local codes and their mapping,
and the site's photographs as JPEG files listed in a manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from flip.synth.dermatology.codes import (
    DIAGNOSES,
    DRUGS,
    LABS,
    LOINC,
    PSORIATIC_ARTHRITIS,
    RXNORM,
    SCORE_SYSTEM,
    SCORES,
    SNOMED,
)
from flip.synth.dermatology.cohort import Person
from flip.synth.dermatology.fhir import CLINIC_LETTER
from flip.synth.dermatology.letters import Letter

#: The warehouse's own codes: diagnoses, observations (scores and labs) and drugs.
LOCAL_DIAGNOSES = {"psoriasis": "DERM01", "eczema": "DERM02", "hs": "DERM03", "psa": "RHEU07"}
LOCAL_OBSERVATIONS = {
    **{k: f"SC-{v[0]}" for k, v in SCORES.items()},
    **{k: f"LAB{i + 200}" for i, k in enumerate(LABS)},
}
LOCAL_DRUGS = {k: f"RX{i + 10:03d}" for i, k in enumerate(DRUGS)}
MANIFEST_HEADER = ["photo_id", "patient_ref", "taken", "body_site", "file", "camera"]
#: Where the manifest sits in the extract; its `file` column names JPEGs beside it.
MANIFEST = "photos/manifest.csv"
#: DICOM's code system of modalities; XC: external-camera photography.
MODALITIES = "http://dicom.nema.org/resources/ontology/DCM"


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)


def write_tables(
    site: str, people: list[Person], letters: dict[int, list[tuple[int, Letter]]], folder: Path
) -> None:
    """Write patients, diagnoses, observations, prescriptions and letters, and mapping.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(
        folder / "patients.csv",
        ["patient_ref", "nhs_number", "dob", "sex"],
        [[p.mrn, p.nhs, p.birth_date.strftime("%d/%m/%Y"), p.sex[0].upper()] for p in people],
    )
    diagnoses = []
    for p in people:
        diagnoses.append(
            [f"{p.mrn}-dx", p.mrn, LOCAL_DIAGNOSES[p.diagnosis], p.diagnosed.isoformat()]
        )
        if p.psa:
            diagnoses.append(
                [f"{p.mrn}-psa", p.mrn, LOCAL_DIAGNOSES["psa"], p.diagnosed.isoformat()]
            )
    _write(
        folder / "diagnoses.csv", ["diag_id", "patient_ref", "diag_code", "diagnosed"], diagnoses
    )
    observations = []
    for p in people:
        for number, visit in enumerate(p.visits):
            values = dict(visit.scores)
            if number == 0:
                values["fitzpatrick"] = p.fitzpatrick
            values.update({name: v for day, name, v in p.labs if day == visit.day})
            for name, value in values.items():
                unit = LABS[name][1] if name in LABS else ""
                observations.append(
                    [
                        f"{p.mrn}-{number}-{name}",
                        p.mrn,
                        LOCAL_OBSERVATIONS[name],
                        f"{value:g}",
                        unit,
                        visit.day.isoformat(),
                    ]
                )
    _write(
        folder / "observations.csv",
        ["obs_id", "patient_ref", "obs_code", "value", "units", "taken"],
        observations,
    )
    _write(
        folder / "prescriptions.csv",
        ["rx_id", "patient_ref", "drug_code", "started"],
        [
            [f"{p.mrn}-rx{i}", p.mrn, LOCAL_DRUGS[t.drug], t.start.isoformat()]
            for p in people
            for i, t in enumerate(p.treatments)
        ],
    )
    _write(
        folder / "letters.csv",
        ["letter_id", "patient_ref", "written", "body"],
        [
            [f"{p.mrn}-L{v}", p.mrn, p.visits[v].day.isoformat(), letter.text]
            for p in people
            for v, letter in letters.get(p.serial, [])
        ],
    )
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping(site), sort_keys=False))


def mapping(site: str) -> dict:
    """The extract's mapping: files, columns, and local codes to SNOMED CT, LOINC, RxNorm."""
    dx, obs, rx = (f"urn:{site}:{kind}" for kind in ("diagnosis", "observation", "drug"))

    def event(file: str, ident: str, code: str, system: str, when: str, table: str) -> dict:
        return {
            "file": file,
            "id": ident,
            "person": "patient_ref",
            "code": {"column": code, "system": system},
            "date": {"column": when},
            "default_table": table,
        }

    observations = event("observations.csv", "obs_id", "obs_code", obs, "taken", "measurement")
    observations |= {"value": "value", "unit": {"column": "units"}}
    letters = event("letters.csv", "letter_id", "", "", "written", "note")
    letters["code"] = {"value": CLINIC_LETTER, "system": LOINC}
    letters["text"] = "body"
    diagnosis_codes = {
        **{LOCAL_DIAGNOSES[k]: {"system": SNOMED, "code": v[0]} for k, v in DIAGNOSES.items()},
        LOCAL_DIAGNOSES["psa"]: {"system": SNOMED, "code": PSORIATIC_ARTHRITIS[0]},
    }
    observation_codes = {
        **{
            LOCAL_OBSERVATIONS[k]: {"system": SCORE_SYSTEM, "code": v[0]} for k, v in SCORES.items()
        },
        **{LOCAL_OBSERVATIONS[k]: {"system": LOINC, "code": v[0]} for k, v in LABS.items()},
    }
    return {
        "source": f"{site}-warehouse",
        "person": {
            "file": "patients.csv",
            "id": "patient_ref",
            "identifier": "patient_ref",
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
        },
        "events": [
            event("diagnoses.csv", "diag_id", "diag_code", dx, "diagnosed", "condition_occurrence"),
            observations,
            event("prescriptions.csv", "rx_id", "drug_code", rx, "started", "drug_exposure"),
            letters,
            {
                "name": "photos",
                "file": MANIFEST,
                "id": "photo_id",
                "person": "patient_ref",
                "code": {"value": "XC", "system": MODALITIES},
                "date": {"column": "taken"},
                "image": {"path": "file"},
                "default_table": "image_occurrence",
            },
        ],
        "local_codes": {
            dx: diagnosis_codes,
            obs: observation_codes,
            rx: {LOCAL_DRUGS[k]: {"system": RXNORM, "code": v[0]} for k, v in DRUGS.items()},
        },
    }


def write_manifest(path: Path, rows: list[list[str]]) -> None:
    """Write the photographs' manifest CSV."""
    _write(path, MANIFEST_HEADER, rows)


def write_pharmacy(site: str, people: list[Person], folder: Path) -> None:
    """A pharmacy system's extract beside an HL7 v2 feed: patients and their prescriptions."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(
        folder / "patients.csv",
        ["patient_ref", "nhs_number", "dob", "sex"],
        [[p.mrn, p.nhs, p.birth_date.strftime("%d/%m/%Y"), p.sex[0].upper()] for p in people],
    )
    _write(
        folder / "prescriptions.csv",
        ["rx_id", "patient_ref", "drug_code", "started"],
        [
            [f"{p.mrn}-rx{i}", p.mrn, LOCAL_DRUGS[t.drug], t.start.isoformat()]
            for p in people
            for i, t in enumerate(p.treatments)
        ],
    )
    spec = mapping(site)
    spec["source"] = f"{site}-pharmacy"
    spec["events"] = [e for e in spec["events"] if e.get("file") == "prescriptions.csv"]
    spec["local_codes"] = {k: v for k, v in spec["local_codes"].items() if k.endswith(":drug")}
    (folder / "mapping.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
