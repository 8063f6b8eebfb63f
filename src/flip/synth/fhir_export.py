"""Write synthetic patients as FHIR R4: transaction bundles or a bulk-export NDJSON folder.

Beside each patient's facts, the export carries the site's real-world shapes
(`flip.synth.shapes`): results and visits with a time of day and a zone, a
bilirubin below the detection limit as `<5`, a lipid DiagnosticReport over its
results, records that are not facts (a refuted MI, a diagnosis or a blood pressure
entered in error, a cancelled potassium), a Patient sent twice under one id, and,
when asked, a result no body can have or the same patient under a second Patient id
sharing the MRN and NHS number.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson

from flip.synth.shapes import (
    IMPLAUSIBLE_RULE,
    NOT_FACT_RULES,
    TIDY,
    PatientShapes,
    Shapes,
    Truth,
    censored,
    nhs_number,
    plan_patient,
)
from flip.synth.world import CLINIC_NOTE_LOINC, CONDITIONS, MEASUREMENTS, SMOKER_SNOMED, Patient

_FAMILY = ("Okafor", "Smith", "Nguyen", "Patel", "Kowalski", "Garcia", "Haddad", "Jones", "Mbeki")
_GIVEN = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jude")
_UNITS = "http://unitsofmeasure.org"
_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
#: LOINC lipid panel, the DiagnosticReport over a patient's cholesterol results.
LIPID_PANEL = "24331-1"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def mrn_system(site: str) -> str:
    """The identifier system of the site's medical record numbers."""
    return f"urn:flip:{site}:mrn"


def _uid(site: str, *parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((site, *parts))))


def _serial(p: Patient) -> int:
    return int(p.source_id[3:])


def _when(day: date, shapes: PatientShapes, minutes: int = 0) -> tuple[str, datetime | None]:
    """(FHIR dateTime, the wall-clock time it names) for an event on `day`."""
    if shapes.at is None:
        return day.isoformat(), None
    moment = datetime.combine(day, shapes.at) + timedelta(minutes=minutes)
    return moment.isoformat() + shapes.zone, moment


def _patient(site: str, p: Patient, pid: str) -> dict:
    serial = _serial(p)
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {"system": mrn_system(site), "value": p.source_id},
            {"system": NHS_NUMBER, "value": nhs_number(site, serial)},
        ],
        "name": [
            {"family": _FAMILY[serial % len(_FAMILY)], "given": [_GIVEN[serial % len(_GIVEN)]]}
        ],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }


def _patient_resources(
    site: str, p: Patient, shapes: PatientShapes = TIDY, limits: Shapes | None = None
) -> Iterator[dict]:
    """The resources of one patient, each with a stable id: its facts, then the records
    its shapes add. `limits` says whether a result below a detection limit carries `<`."""
    yield from _facts(site, p, shapes, limits or Shapes.none())
    yield from _shaped(site, p, shapes)


def _facts(site: str, p: Patient, shapes: PatientShapes, limits: Shapes) -> Iterator[dict]:
    pid = _uid(site, p.source_id)
    yield _patient(site, p, pid)
    subject = {"reference": f"Patient/{pid}"}
    eid = _uid(site, p.source_id, "encounter")
    yield _encounter(eid, subject, p.index_date, shapes, minutes=25)
    for name, onset in p.conditions.items():
        yield _condition(site, p, name, onset, subject)
    effective, _ = _when(p.index_date, shapes)
    for name, value in p.measurements.items():
        yield _quantity(site, p, name, value, subject, eid, effective, limits)
    if p.smoker:
        yield _observation(site, p, "smoker", subject, eid, effective) | {
            "code": {"coding": [{"system": _SNOMED, "code": SMOKER_SNOMED}]},
        }
    yield from _review(site, p, shapes, subject, limits)
    if shapes.duplicate:
        subject = {"reference": f"Patient/{_uid(site, p.source_id, 'registration-2')}"}
    for number, (when, text) in enumerate(p.notes, start=1):
        written, moment = _when(when, shapes, minutes=40)
        yield {
            "resourceType": "DocumentReference",
            "id": _uid(site, p.source_id, f"note-{number}"),
            "status": "current",
            "type": {"coding": [{"system": _LOINC, "code": CLINIC_NOTE_LOINC}]},
            "subject": subject,
            "date": written if moment else f"{when.isoformat()}T09:30:00Z",
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


def _quantity(
    site: str,
    p: Patient,
    name: str,
    value: float,
    subject: dict,
    eid: str,
    when: str,
    limits: Shapes,
) -> dict:
    """The Observation of one measured value, with `<` when it is below a detection limit."""
    loinc, unit = MEASUREMENTS[name]
    comparator, sent = censored(name, value, limits)
    quantity = {"value": sent, "unit": unit, "system": _UNITS, "code": unit}
    if comparator:
        quantity = {"value": sent, "comparator": comparator} | quantity
    return _observation(site, p, name, subject, eid, when) | {
        "code": {"coding": [{"system": _LOINC, "code": loinc}]},
        "valueQuantity": quantity,
    }


def _review(
    site: str, p: Patient, shapes: PatientShapes, subject: dict, limits: Shapes
) -> Iterator[dict]:
    """The review visit that ends the patient's follow-up, and what was measured there."""
    eid = _uid(site, p.source_id, "review")
    visit = _encounter(eid, subject, p.follow_up_end, shapes, minutes=15)
    yield visit
    for name, value in p.review.items():
        yield _quantity(site, p, name, value, subject, eid, visit["period"]["start"], limits)


def _encounter(eid: str, subject: dict, day: date, shapes: PatientShapes, minutes: int) -> dict:
    """An ambulatory visit on `day` that lasts `minutes`."""
    start, _ = _when(day, shapes)
    end, _ = _when(day, shapes, minutes=minutes)
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": subject,
        "period": {"start": start, "end": end},
    }


def _shaped(site: str, p: Patient, shapes: PatientShapes) -> Iterator[dict]:
    """What a patient's shapes add beside the facts: a panel, a record that is no fact, a
    typing slip, a second registration (which the patient's letters name)."""
    subject = {"reference": f"Patient/{_uid(site, p.source_id)}"}
    eid = _uid(site, p.source_id, "encounter")
    effective, _ = _when(p.index_date, shapes)
    if shapes.panel and {"total_chol", "hdl"} <= p.measurements.keys():
        yield _lipid_panel(site, p, subject, effective)
    if shapes.not_fact:
        yield _not_a_fact(site, p, shapes.not_fact, subject, eid, effective)
    if shapes.implausible:
        yield _observation(site, p, "sbp-slip", subject, eid, effective) | {
            "code": {"coding": [{"system": _LOINC, "code": MEASUREMENTS["sbp"][0]}]},
            "valueQuantity": {
                "value": 1300.0,
                "unit": "mm[Hg]",
                "system": _UNITS,
                "code": "mm[Hg]",
            },
        }
    if shapes.duplicate:
        second = _patient(site, p, _uid(site, p.source_id, "registration-2"))
        second["name"][0]["family"] = second["name"][0]["family"].upper()
        yield second


def _condition(site: str, p: Patient, name: str, onset: date, subject: dict) -> dict:
    return {
        "resourceType": "Condition",
        "id": _uid(site, p.source_id, name),
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
        "code": {"coding": [{"system": _SNOMED, "code": CONDITIONS[name][0]}]},
        "subject": subject,
        "onsetDateTime": onset.isoformat(),
    }


def _observation(site: str, p: Patient, name: str, subject: dict, eid: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": _uid(site, p.source_id, name),
        "status": "final",
        "subject": subject,
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": when,
    }


def _lipid_panel(site: str, p: Patient, subject: dict, when: str) -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "id": _uid(site, p.source_id, "lipid-panel"),
        "status": "final",
        "code": {"coding": [{"system": _LOINC, "code": LIPID_PANEL}]},
        "subject": subject,
        "effectiveDateTime": when,
        "result": [
            {"reference": f"Observation/{_uid(site, p.source_id, name)}"}
            for name in ("total_chol", "hdl")
        ],
    }


def _not_a_fact(site: str, p: Patient, kind: str, subject: dict, eid: str, when: str) -> dict:
    """A record that travels beside facts but is none: its status says so."""
    if kind in ("refuted", "condition-entered-in-error"):
        name, onset = ("mi", p.index_date + timedelta(days=200))
        if kind != "refuted":
            name, onset = ("diabetes", p.index_date - timedelta(days=90))
        status = "refuted" if kind == "refuted" else "entered-in-error"
        condition = _condition(site, p, name, onset, subject)
        del condition["clinicalStatus"]
        return condition | {
            "id": _uid(site, p.source_id, f"{name}-{kind}"),
            "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": status}]},
        }
    if kind == "entered-in-error":
        return _observation(site, p, "sbp-wrong-patient", subject, eid, when) | {
            "status": "entered-in-error",
            "code": {"coding": [{"system": _LOINC, "code": MEASUREMENTS["sbp"][0]}]},
            "valueQuantity": {"value": 199.0, "unit": "mm[Hg]", "system": _UNITS, "code": "mm[Hg]"},
        }
    return _observation(site, p, "potassium-cancelled", subject, eid, when) | {
        "status": "cancelled",
        "code": {"coding": [{"system": _LOINC, "code": MEASUREMENTS["potassium"][0]}]},
    }


def patient_export(
    site: str, patients: list[Patient], shapes: Shapes, seed: int
) -> tuple[list[list[dict]], list[dict], Truth]:
    """Each patient's resources, the resources sent again at the end, and the truth."""
    truth = Truth(persons=len(patients), person_identifier=mrn_system(site))
    per_patient, resent = [], []
    for p in patients:
        plan = plan_patient(shapes, site, _serial(p), p.index_date, seed)
        facts = list(_facts(site, p, plan, shapes))
        shaped = list(_shaped(site, p, plan))
        per_patient.append(facts + shaped)
        _record_truth(truth, plan, facts, shaped)
        if plan.resent:
            resent.append(facts[0])
    return per_patient, resent, truth


def _record_truth(truth: Truth, plan: PatientShapes, facts: list[dict], shaped: list[dict]) -> None:
    """What the ingest must make of one patient's facts and the records its shapes add."""
    truth.resent += plan.resent
    truth.duplicates += plan.duplicate
    if plan.implausible:
        truth.quarantined[IMPLAUSIBLE_RULE] += 1
    if any(r["resourceType"] == "DiagnosticReport" for r in shaped):
        truth.skipped["fhir.report.panel"] += 1
    if plan.not_fact:
        truth.skipped[NOT_FACT_RULES[plan.not_fact]] += 1
    for r in facts:
        key = f"{r['resourceType']}/{r['id']}"
        if "comparator" in r.get("valueQuantity", {}):
            truth.operators[key] = r["valueQuantity"]["comparator"]
        written = r.get("effectiveDateTime") or r.get("period", {}).get("start") or r.get("date")
        if written and "T" in written:
            truth.times[key] = datetime.fromisoformat(written).replace(tzinfo=None)


def write_bundles(
    site: str,
    patients: list[Patient],
    folder: Path,
    per_bundle: int = 50,
    shapes: Shapes | None = None,
    seed: int = 0,
) -> Truth:
    """Write transaction bundles of `per_bundle` patients, referencing by urn:uuid; the
    Patients sent again go in a last bundle of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    per_patient, resent, truth = patient_export(site, patients, shapes or Shapes.none(), seed)
    batches = [
        [r for rs in per_patient[start : start + per_bundle] for r in rs]
        for start in range(0, len(per_patient), per_bundle)
    ]
    if resent:
        batches.append(resent)
    for number, resources in enumerate(batches, start=1):
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": _urn_references(r),
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        path = folder / f"bundle-{number:04d}.json"
        path.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    return truth


def _urn(reference: dict) -> dict:
    return {"reference": "urn:uuid:" + reference["reference"].split("/", 1)[1]}


def _urn_references(resource: dict) -> dict:
    """Rewrite relative references as urn:uuid, as a transaction bundle does."""
    out = dict(resource)
    for key in ("subject", "encounter"):
        if key in out:
            out[key] = _urn(out[key])
    if "result" in out:
        out["result"] = [_urn(r) for r in out["result"]]
    return out


def write_ndjson(
    site: str,
    patients: list[Patient],
    folder: Path,
    shapes: Shapes | None = None,
    seed: int = 0,
) -> Truth:
    """Write a FHIR Bulk Data export: one NDJSON file per resource type; Patients sent
    again are appended to Patient.ndjson."""
    folder.mkdir(parents=True, exist_ok=True)
    per_patient, resent, truth = patient_export(site, patients, shapes or Shapes.none(), seed)
    handles: dict[str, object] = {}
    try:
        for resource in [r for rs in per_patient for r in rs] + resent:
            kind = resource["resourceType"]
            if kind not in handles:
                handles[kind] = (folder / f"{kind}.ndjson").open("wb")
            handles[kind].write(orjson.dumps(resource) + b"\n")
    finally:
        for handle in handles.values():
            handle.close()
    return truth
