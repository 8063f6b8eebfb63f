"""FHIR fidelity on shapes other systems send: an Observation's value beside its components."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
SUBJECT = {"reference": "Patient/p1"}


def cc(code, system=LOINC):
    return {"coding": [{"system": system, "code": code}]}


def obs(id_, code, **extra):
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": cc(code),
        "subject": SUBJECT,
        "effectiveDateTime": "2021-01-01T10:00:00Z",
        **extra,
    }


def score(code, value):
    return {"code": cc(code), "valueQuantity": {"value": value, "code": "{score}"}}


def test_an_observation_with_a_value_and_components_keeps_both(store, tmp_path):
    gcs = obs(
        "gcs",
        "9269-2",
        valueQuantity={"value": 13, "code": "{score}"},
        component=[score("9267-6", 4), score("9270-0", 4), score("9268-4", 5)],
    )
    apgar = obs("apgar", "9274-2", valueInteger=9, component=[score("32401-2", 2)])
    path = write_ndjson(tmp_path / "o.ndjson", [PATIENT, gcs, apgar])
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0, report.rules
    stored = sorted(
        (r["measurement_source_value"], r["value_as_number"]) for r in rows(store, "measurement")
    )
    assert stored == [
        ("32401-2", 2.0),
        ("9267-6", 4.0),
        ("9268-4", 5.0),
        ("9269-2", 13.0),
        ("9270-0", 4.0),
        ("9274-2", 9.0),
    ]
    assert_accounted(store, report)
    again = ingest_path(store, "fhir", path)
    assert (again.loaded, again.unchanged) == (0, report.loaded)
    assert len(rows(store, "measurement")) == 6
