"""A US Core-like FHIR R4 bulk export (NDJSON per resource type), shaped as Synthea writes one.

Patients carry race/ethnicity extensions and several identifiers; encounters name their
practitioner, location and organization by conditional reference; dateTimes carry a UTC
offset; labs come as DiagnosticReport panels over Observations, some with comparators and
some with statuses that are not facts. About 45 resources per patient.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
RXNORM, CVX = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/cvx"
NPI, SYNTHEA = "http://hl7.org/fhir/sid/us-npi", "https://github.com/synthetichealth/synthea"
MRN = "http://hospital.smarthealthit.org"
PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-"

CONDITIONS = ["44054006", "38341003", "195967001", "15777000", "271737000", "10509002"]
LABS = [("2345-7", "mg/dL", 70, 140), ("2093-3", "mg/dL", 120, 260), ("4548-4", "%", 4.5, 9)]
VITALS = [("8302-2", "cm", 150, 195), ("29463-7", "kg", 50, 120), ("8867-4", "/min", 55, 100)]
DRUGS = ["6809", "314076", "197361", "310798"]
PROCEDURES = ["430193006", "73761001", "710824005"]
VACCINES = ["140", "08", "133"]


def _cc(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], "text": display or code}


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "-05:00"


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


class _Writer:
    """Collects resources per type and writes them as NDJSON files."""

    def __init__(self) -> None:
        self.files: dict[str, list[bytes]] = {}

    def add(self, resource: dict) -> dict:
        self.files.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
        return resource

    def write(self, folder: Path) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        for kind, lines in self.files.items():
            (folder / f"{kind}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        return sum(len(lines) for lines in self.files.values())


def _actors(out: _Writer, rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """n practitioners, each with an organization and a location; their identifiers."""
    actors = []
    for i in range(n):
        npi, org, loc = f"99999{i:05d}", _uid(rng), _uid(rng)
        out.add(
            {
                "resourceType": "Practitioner",
                "id": _uid(rng),
                "meta": {"profile": [f"{PROFILE}practitioner"]},
                "identifier": [{"system": NPI, "value": npi}],
                "active": True,
                "name": [{"family": f"Doe{i}", "given": ["Sam"], "prefix": ["Dr."]}],
                "gender": rng.choice(["male", "female"]),
            }
        )
        out.add(
            {
                "resourceType": "Organization",
                "id": _uid(rng),
                "meta": {"profile": [f"{PROFILE}organization"]},
                "identifier": [{"system": SYNTHEA, "value": org}],
                "active": True,
                "type": [_cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov")],
                "name": f"PCP{i:05d}",
            }
        )
        out.add(
            {
                "resourceType": "Location",
                "id": _uid(rng),
                "meta": {"profile": [f"{PROFILE}location"]},
                "identifier": [{"system": SYNTHEA, "value": loc}],
                "status": "active",
                "name": f"PCP{i:05d}",
                "address": {"line": [f"{i} Main St"], "city": "Boston", "state": "MA"},
                "position": {"latitude": 42.3 + i / 1000, "longitude": -71.0},
            }
        )
        actors.append((npi, org, loc))
    return actors


def _patient(rng: random.Random, pid: str, born: datetime) -> dict:
    race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [f"{PROFILE}patient"]},
        "extension": [
            {
                "url": race,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": "urn:oid:2.16.840.1.113883.6.238",
                            "code": "2106-3",
                        },
                    },
                    {"url": "text", "valueString": "White"},
                ],
            }
        ],
        "identifier": [
            {"system": SYNTHEA, "value": pid},
            {
                "system": MRN,
                "value": pid,
                "type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
            },
            {
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": f"999-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            },
        ],
        "name": [{"use": "official", "family": f"Family{rng.randint(1, 999)}", "given": ["Pat"]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": born.date().isoformat(),
        "address": [{"line": ["1 Elm St"], "city": "Boston", "state": "MA", "country": "US"}],
    }


def _encounter(pid: str, eid: str, start: datetime, actor: tuple[str, str, str]) -> dict:
    npi, org, loc = actor
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"profile": [f"{PROFILE}encounter"]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_cc(SNOMED, "185349003", "Encounter for check up")],
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|{npi}"}}],
        "period": {"start": _when(start), "end": _when(start + timedelta(minutes=30))},
        "location": [{"location": {"reference": f"Location?identifier={SYNTHEA}|{loc}"}}],
        "serviceProvider": {"reference": f"Organization?identifier={SYNTHEA}|{org}"},
    }


def _observation(rng, pid, eid, when, code, unit, low, high, status="final") -> dict:
    value: dict = {"value": round(rng.uniform(low, high), 1), "unit": unit, "code": unit}
    value["system"] = "http://unitsofmeasure.org"
    if rng.random() < 0.03:
        value["comparator"] = "<"
    return {
        "resourceType": "Observation",
        "id": _uid(rng),
        "meta": {"profile": [f"{PROFILE}observation-lab"]},
        "status": status,
        "category": [
            _cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")
        ],
        "code": _cc(LOINC, code),
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": _when(when),
        "issued": _when(when).replace("-05:00", ".123-05:00"),
        "valueQuantity": value,
    }


def _event(kind: str, pid: str, eid: str, rid: str, **fields) -> dict:
    return {
        "resourceType": kind,
        "id": rid,
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        **fields,
    }


def _person(out: _Writer, rng: random.Random, actors: list, now: datetime) -> None:
    pid = _uid(rng)
    born = now - timedelta(days=rng.randint(20 * 365, 85 * 365))
    out.add(_patient(rng, pid, born))
    for visit in range(6):
        start = now - timedelta(days=rng.randint(1, 3000), hours=rng.randint(0, 10))
        eid = _uid(rng)
        out.add(_encounter(pid, eid, start, rng.choice(actors)))
        for code, unit, low, high in VITALS:
            out.add(_observation(rng, pid, eid, start, code, unit, low, high))
        if visit % 2 == 0:
            status = "final" if rng.random() > 0.02 else "entered-in-error"
            results = [_observation(rng, pid, eid, start, *lab, status=status) for lab in LABS]
            for result in results:
                out.add(result)
            panel = _event(
                "DiagnosticReport",
                pid,
                eid,
                _uid(rng),
                status="final",
                code=_cc(LOINC, "24323-8", "Comprehensive metabolic panel"),
                effectiveDateTime=_when(start),
                issued=_when(start),
                result=[{"reference": f"Observation/{r['id']}"} for r in results],
            )
            out.add(panel)
        if visit == 0:
            for code in rng.sample(CONDITIONS, 2):
                verification = "confirmed" if rng.random() > 0.05 else "refuted"
                out.add(
                    _event(
                        "Condition",
                        pid,
                        eid,
                        _uid(rng),
                        clinicalStatus=_cc(
                            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"
                        ),
                        verificationStatus=_cc(
                            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            verification,
                        ),
                        code=_cc(SNOMED, code),
                        onsetDateTime=_when(start),
                        recordedDate=_when(start),
                    )
                )
        if visit < 2:
            out.add(
                _event(
                    "MedicationRequest",
                    pid,
                    eid,
                    _uid(rng),
                    status=rng.choice(["active", "stopped", "completed"]),
                    intent="order",
                    medicationCodeableConcept=_cc(RXNORM, rng.choice(DRUGS)),
                    authoredOn=_when(start),
                )
            )
            out.add(
                _event(
                    "Procedure",
                    pid,
                    eid,
                    _uid(rng),
                    status="completed",
                    code=_cc(SNOMED, rng.choice(PROCEDURES)),
                    performedPeriod={"start": _when(start), "end": _when(start)},
                )
            )
        if visit == 1:
            immunization = _event(
                "Immunization",
                pid,
                eid,
                _uid(rng),
                status="completed",
                vaccineCode=_cc(CVX, rng.choice(VACCINES)),
                occurrenceDateTime=_when(start),
                primarySource=True,
            )
            immunization["patient"] = immunization.pop("subject")
            out.add(immunization)


def write_export(folder: Path, patients: int = 200, seed: int = 0) -> int:
    """Write a US Core-like NDJSON export of `patients` into `folder`; return its resources."""
    rng = random.Random(seed)
    out = _Writer()
    actors = _actors(out, rng, max(1, patients // 20))
    now = datetime(2025, 6, 1, 12, 0)
    for _ in range(patients):
        _person(out, rng, actors, now)
    return out.write(folder)
