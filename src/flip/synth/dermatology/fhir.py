"""A dermatology site's FHIR R4 export: one transaction bundle per batch of patients."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

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
    UCUM,
)
from flip.synth.dermatology.cohort import Person
from flip.synth.dermatology.letters import Letter

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
#: LOINC document type of a clinic letter (Consult note).
CLINIC_LETTER = "11488-4"


def mrn_system(site: str) -> str:
    """The identifier system of the site's hospital numbers."""
    return f"urn:flip:{site}:mrn"


def _id(site: str, *parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((site, *map(str, parts)))))


def _quantity(value: float, unit: str) -> dict:
    """A valueQuantity; a score has no unit."""
    return (
        {"value": value, "unit": unit, "system": UCUM, "code": unit} if unit else {"value": value}
    )


def resources(site: str, p: Person, letters: list[tuple[int, Letter]]) -> Iterator[dict]:
    """Every resource of one patient, each with a stable id."""
    pid = _id(site, p.mrn)
    subject = {"reference": f"urn:uuid:{pid}"}
    yield {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {"system": mrn_system(site), "value": p.mrn},
            {"system": NHS_NUMBER, "value": p.nhs},
        ],
        "name": [{"family": p.family, "given": [p.given]}],
        "telecom": [{"system": "phone", "value": p.phone, "use": "mobile"}],
        "address": [{"line": [p.street], "city": p.town, "postalCode": p.postcode}],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }
    diagnoses = [("dx", DIAGNOSES[p.diagnosis][0], p.diagnosed)]
    if p.psa:
        diagnoses.append(("psa", PSORIATIC_ARTHRITIS[0], p.diagnosed))
    for name, code, onset in diagnoses:
        yield {
            "resourceType": "Condition",
            "id": _id(site, p.mrn, name),
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "subject": subject,
            "onsetDateTime": onset.isoformat(),
        }
    for number, visit in enumerate(p.visits):
        eid = _id(site, p.mrn, "visit", number)
        yield {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": _ACT, "code": "AMB"},
            "subject": subject,
            "period": {"start": visit.day.isoformat(), "end": visit.day.isoformat()},
        }
        observed = [
            (k, SCORE_SYSTEM, SCORES[k][0], v, SCORES[k][1]) for k, v in visit.scores.items()
        ]
        if number == 0:
            observed.append(("fitzpatrick", SCORE_SYSTEM, "FITZPATRICK", p.fitzpatrick, ""))
        observed += [
            (name, LOINC, LABS[name][0], value, LABS[name][1])
            for day, name, value in p.labs
            if day == visit.day
        ]
        for name, system, code, value, unit in observed:
            yield {
                "resourceType": "Observation",
                "id": _id(site, p.mrn, "visit", number, name),
                "status": "final",
                "code": {"coding": [{"system": system, "code": code}]},
                "subject": subject,
                "encounter": {"reference": f"urn:uuid:{eid}"},
                "effectiveDateTime": visit.day.isoformat(),
                "valueQuantity": _quantity(value, unit),
            }
    for number, t in enumerate(p.treatments):
        period = {"start": t.start.isoformat()} | ({"end": t.end.isoformat()} if t.end else {})
        yield {
            "resourceType": "MedicationStatement",
            "id": _id(site, p.mrn, "drug", number),
            "status": "completed" if t.end else "active",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": RXNORM, "code": DRUGS[t.drug][0], "display": DRUGS[t.drug][1]}
                ]
            },
            "subject": subject,
            "effectivePeriod": period,
        }
    for visit_number, letter in letters:
        yield {
            "resourceType": "DocumentReference",
            "id": _id(site, p.mrn, "letter", visit_number),
            "status": "current",
            "type": {"coding": [{"system": LOINC, "code": CLINIC_LETTER}]},
            "subject": subject,
            "date": f"{p.visits[visit_number].day.isoformat()}T17:00:00Z",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(letter.text.encode()).decode(),
                        "title": "Dermatology clinic letter",
                    }
                }
            ],
        }


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def write_bundles(
    site: str,
    people: list[Person],
    letters: dict[int, list[tuple[int, Letter]]],
    folder: Path,
    per_bundle: int = 40,
) -> None:
    """Write transaction bundles of `per_bundle` patients under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, start in enumerate(range(0, len(people), per_bundle), start=1):
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for p in people[start : start + per_bundle]
            for r in resources(site, p, letters.get(p.serial, []))
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (folder / f"bundle-{number:04d}.json").write_bytes(orjson.dumps(bundle))
