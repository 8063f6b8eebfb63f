"""Write synthetic patients as FHIR R4: transaction bundles or a bulk-export NDJSON folder."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson

from flip.synth.world import CLINIC_NOTE_LOINC, CONDITIONS, MEASUREMENTS, SMOKER_SNOMED, Patient

_FAMILY = ("Okafor", "Smith", "Nguyen", "Patel", "Kowalski", "Garcia", "Haddad", "Jones", "Mbeki")
_GIVEN = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jude")
_UNITS = "http://unitsofmeasure.org"


def _uid(site: str, *parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((site, *parts))))


def _patient_resources(site: str, p: Patient) -> Iterator[dict]:
    """The resources of one patient, each with a stable id."""
    pid = _uid(site, p.source_id)
    serial = int(p.source_id[3:])
    yield {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": f"urn:flip:{site}:mrn", "value": p.source_id}],
        "name": [
            {"family": _FAMILY[serial % len(_FAMILY)], "given": [_GIVEN[serial % len(_GIVEN)]]}
        ],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }
    subject = {"reference": f"Patient/{pid}"}
    eid = _uid(site, p.source_id, "encounter")
    yield {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": subject,
        "period": {"start": p.index_date.isoformat(), "end": p.index_date.isoformat()},
    }
    for name, onset in p.conditions.items():
        yield {
            "resourceType": "Condition",
            "id": _uid(site, p.source_id, name),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": CONDITIONS[name][0]}]},
            "subject": subject,
            "onsetDateTime": onset.isoformat(),
        }
    for name, value in p.measurements.items():
        loinc, unit = MEASUREMENTS[name]
        yield _observation(site, p, name, subject, eid, p.index_date) | {
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": _UNITS, "code": unit},
        }
    if p.smoker:
        yield _observation(site, p, "smoker", subject, eid, p.index_date) | {
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": SMOKER_SNOMED}]},
        }
    for number, (when, text) in enumerate(p.notes, start=1):
        yield {
            "resourceType": "DocumentReference",
            "id": _uid(site, p.source_id, f"note-{number}"),
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": CLINIC_NOTE_LOINC}]},
            "subject": subject,
            "date": f"{when.isoformat()}T09:30:00Z",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(text.encode()).decode(),
                        "title": "Clinic letter",
                    }
                }
            ],
        }


def _observation(site: str, p: Patient, name: str, subject: dict, eid: str, when: date) -> dict:
    return {
        "resourceType": "Observation",
        "id": _uid(site, p.source_id, name),
        "status": "final",
        "subject": subject,
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": when.isoformat(),
    }


def write_bundles(site: str, patients: list[Patient], folder: Path, per_bundle: int = 50) -> None:
    """Write transaction bundles of `per_bundle` patients, referencing by urn:uuid."""
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(patients), per_bundle):
        entries = []
        for p in patients[start : start + per_bundle]:
            for resource in _patient_resources(site, p):
                full_url = f"urn:uuid:{resource['id']}"
                entries.append(
                    {
                        "fullUrl": full_url,
                        "resource": _urn_references(resource),
                        "request": {
                            "method": "PUT",
                            "url": f"{resource['resourceType']}/{resource['id']}",
                        },
                    }
                )
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        path = folder / f"bundle-{start // per_bundle + 1:04d}.json"
        path.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))


def _urn_references(resource: dict) -> dict:
    """Rewrite relative references as urn:uuid, as a transaction bundle does."""
    out = dict(resource)
    for key in ("subject", "encounter"):
        if key in out:
            out[key] = {"reference": "urn:uuid:" + out[key]["reference"].split("/", 1)[1]}
    return out


def write_ndjson(site: str, patients: list[Patient], folder: Path) -> None:
    """Write a FHIR Bulk Data export: one NDJSON file per resource type."""
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[str, object] = {}
    try:
        for p in patients:
            for resource in _patient_resources(site, p):
                kind = resource["resourceType"]
                if kind not in handles:
                    handles[kind] = (folder / f"{kind}.ndjson").open("wb")
                handles[kind].write(orjson.dumps(resource) + b"\n")
    finally:
        for handle in handles.values():
            handle.close()
