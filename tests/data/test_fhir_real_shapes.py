"""FHIR shapes real servers send that are not data: a searchset's OperationOutcome."""

import orjson

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

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
