"""Resources read as several records (an Observation's components, a report's contained
results) are withdrawn whole, and an amended version drops the parts it no longer has."""

import copy

import orjson
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import Ingestor, ingest_path
from flip.data.sources.fhir import References, _records
from flip.data.terminology import Vocabulary
from tests.data.accounting import assert_accounted
from tests.data.stored import write_ndjson

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}


def _component(code: str, value: float) -> dict:
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
    }


#: A blood pressure with its two components, as the review's bp_final.ndjson.
BP = {
    "resourceType": "Observation",
    "id": "bp1",
    "status": "final",
    "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "effectiveDateTime": "2021-01-01T10:00:00Z",
    "component": [_component("8480-6", 120), _component("8462-4", 80)],
}
#: A report whose one result it contains.
REPORT = {
    "resourceType": "DiagnosticReport",
    "id": "dr1",
    "status": "final",
    "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
    "effectiveDateTime": "2021-01-01T10:00:00Z",
    "contained": [
        {
            "resourceType": "Observation",
            "id": "r1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "valueQuantity": {"value": 5.5, "code": "mmol/L"},
        }
    ],
    "result": [{"reference": "#r1"}],
}


def _with(resource: dict, **changes) -> dict:
    return {**copy.deepcopy(resource), **changes}


def _facts(store) -> list[tuple[str, float]]:
    s, m = schema.source_record, schema.measurement
    with store.connect() as conn:
        found = conn.execute(
            select(s.c.record_key, m.c.value_as_number)
            .join(m, m.c.measurement_id == s.c.cdm_id)
            .where(s.c.cdm_table == "measurement")
            .order_by(s.c.record_key)
        ).all()
    return [tuple(row) for row in found]


def test_an_observation_with_components_re_sent_entered_in_error_is_withdrawn(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    first = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, BP, REPORT]))
    assert_accounted(store, first)
    assert [key for key, _ in _facts(store)] == [
        "DiagnosticReport/dr1#r1",
        "Observation/bp1#component[0]",
        "Observation/bp1#component[1]",
    ]
    withdrawn = [
        PATIENT,
        _with(BP, status="entered-in-error"),
        _with(REPORT, status="entered-in-error"),
    ]
    second = ingest_path(store, "fhir", write_ndjson(export, withdrawn))
    assert_accounted(store, second)
    assert _facts(store) == []
    assert second.withdrawn == 3 and second.withdrawn_rows == {"measurement": 3}
    assert second.loaded == 0 and second.skipped_rules == {"fhir.status.entered_in_error": 2}


def test_the_results_a_withdrawn_report_contains_are_not_read_as_facts(store, tmp_path):
    export = write_ndjson(tmp_path / "ehr.ndjson", [PATIENT, _with(REPORT, status="cancelled")])
    report = ingest_path(store, "fhir", export)
    assert_accounted(store, report)
    assert _facts(store) == [] and report.skipped_rules == {"fhir.status.cancelled": 1}


def test_an_amended_observation_with_fewer_components_drops_the_one_it_lost(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    ingest_path(store, "fhir", write_ndjson(export, [PATIENT, BP]))
    amended = _with(BP, status="amended", component=[_component("8480-6", 130)])
    second = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, amended]))
    assert_accounted(store, second)
    assert _facts(store) == [("Observation/bp1#component[0]", 130.0)]
    again = ingest_path(store, "fhir", export)
    assert (again.loaded, again.unchanged) == (0, 2)
    assert _facts(store) == [("Observation/bp1#component[0]", 130.0)]


def test_an_observation_that_gains_or_loses_components_keeps_only_its_current_rows(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    single = _with(BP, component=None)
    del single["component"]
    single["valueQuantity"] = {"value": 99, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    ingest_path(store, "fhir", write_ndjson(export, [PATIENT, single]))
    assert _facts(store) == [("Observation/bp1", 99.0)]
    report = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, BP]))
    assert_accounted(store, report)
    assert [key for key, _ in _facts(store)] == [
        "Observation/bp1#component[0]",
        "Observation/bp1#component[1]",
    ]
    back = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, single]))
    assert_accounted(store, back)
    assert _facts(store) == [("Observation/bp1", 99.0)]


def test_a_later_version_in_the_same_file_supersedes_every_part_of_the_earlier(store, tmp_path):
    amended = _with(BP, component=[_component("8480-6", 130)])
    export = write_ndjson(tmp_path / "ehr.ndjson", [PATIENT, BP, amended])
    report = ingest_path(store, "fhir", export)
    assert_accounted(store, report)
    assert _facts(store) == [("Observation/bp1#component[0]", 130.0)]
    assert report.skipped_rules == {"identity.superseded_in_run": 2}


def _observation(**changes) -> dict:
    return _with(
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectiveDateTime": "2021-01-01T10:00:00Z",
            "valueQuantity": {"value": 5.5, "code": "mmol/L"},
        },
        **changes,
    )


def test_an_older_version_entered_in_error_leaves_the_newer_stored_version(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    ingest_path(
        store, "fhir", write_ndjson(export, [PATIENT, _observation(meta={"versionId": "2"})])
    )
    stale = _observation(status="entered-in-error", meta={"versionId": "1"})
    report = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, stale]))
    assert_accounted(store, report)
    assert [key for key, _ in _facts(store)] == ["Observation/o2"]
    assert report.withdrawn == 0 and report.warnings["withdrawn.nothing_stored"] == 1
    newer = _observation(status="entered-in-error", meta={"versionId": "3"})
    report = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, newer]))
    assert _facts(store) == [] and report.withdrawn == 1


def test_an_older_version_entered_in_error_in_the_same_file_does_not_withdraw(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    stale = _observation(status="entered-in-error", meta={"versionId": "1"})
    rows = [PATIENT, _observation(meta={"versionId": "2"}), stale]
    report = ingest_path(store, "fhir", write_ndjson(export, rows))
    assert_accounted(store, report)
    assert [key for key, _ in _facts(store)] == ["Observation/o2"]


def test_a_fact_waiting_for_its_patient_is_withdrawn_by_its_later_copy(store):
    # the review's defer.ndjson, its Patient in a later batch: the fact waits for it
    ingestor = Ingestor(store, Vocabulary.from_store(store), "ehr")
    ingestor.start("fhir", "test")
    refs = References()
    fact, withdrawn = _observation(), _observation(status="entered-in-error")
    ingestor.write([r for resource in (fact, withdrawn) for r in _read(resource, refs)])
    ingestor.write(_read(PATIENT, refs))
    report = ingestor.finish()
    assert_accounted(store, report)
    assert _facts(store) == [] and report.withdrawn == 0


def _read(resource: dict, refs: References) -> list:
    return _records(resource, orjson.dumps(resource), "test", refs)
