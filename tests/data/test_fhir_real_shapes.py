"""FHIR shapes real servers send that are not data: a searchset's OperationOutcome."""

import orjson

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"


def test_searchset_outcome_entry_is_skipped_not_quarantined(store, tmp_path):
    """HAPI and other servers put an OperationOutcome (no id, no fullUrl) in a searchset
    with search.mode `outcome`: it is a message about the search, counted as a type not
    read, never quarantined as bad data; the matches and includes around it load."""
    observation = {
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "http://srv/fhir/Patient/q1"},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "processing", "diagnostics": "truncated"}],
    }
    patient = {"resourceType": "Patient", "id": "q1", "gender": "female", "birthDate": "1980"}
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "http://srv/fhir/Observation/x1",
                "resource": observation,
                "search": {"mode": "match"},
            },
            {"resource": outcome, "search": {"mode": "outcome"}},
            {
                "fullUrl": "http://srv/fhir/Patient/q1",
                "resource": patient,
                "search": {"mode": "include"},
            },
        ],
    }
    path = tmp_path / "search.json"
    path.write_bytes(orjson.dumps(bundle))
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0, report.as_dict()
    assert report.skipped_rules == {"fhir.type.not_read": 1}
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [72.0]
    assert_accounted(store, report)


def test_a_corrected_invalid_resource_releases_its_quarantine_row(store, tmp_path):
    """An Observation sent without its required status is quarantined under the key it
    loads with (`Observation/o1`, not the bare id another type may share); the corrected
    resource, sent again, loads and leaves no quarantine row open."""
    patient = {"resourceType": "Patient", "id": "o1", "gender": "male", "birthDate": "1950"}
    pulse = {
        "resourceType": "Observation",
        "id": "o1",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/o1"},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    folder = tmp_path / "export"
    folder.mkdir()
    write_ndjson(folder / "Patient.ndjson", [patient])
    write_ndjson(folder / "Observation.ndjson", [pulse])
    first = ingest_path(store, "fhir", folder)
    assert_accounted(store, first)
    assert [q["record_key"] for q in rows(store, "quarantine")] == ["Observation/o1"]
    write_ndjson(folder / "Observation.ndjson", [dict(pulse, status="final")])
    again = ingest_path(store, "fhir", folder)
    assert_accounted(store, again)
    assert again.loaded == 1, again.as_dict()
    assert rows(store, "quarantine") == []
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [72.0]
