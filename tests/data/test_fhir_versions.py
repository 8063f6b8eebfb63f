"""FHIR resource versions: a later meta.versionId / lastUpdated wins whatever the read order."""

from flip.data.ingest import OLDER_THAN_STORED, SUPERSEDED, ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

PATIENT = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1960-02-03"}


def glucose(value, version=None, updated=None):
    meta = {}
    if version is not None:
        meta["versionId"] = version
    if updated is not None:
        meta["lastUpdated"] = updated
    found = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "effectiveDateTime": "2021-04-05",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org"},
    }
    return found | ({"meta": meta} if meta else {})


def _values(store):
    return [m["value_source_value"] or m["value_as_number"] for m in rows(store, "measurement")]


def test_a_later_version_read_first_is_kept_within_a_run(store, tmp_path):
    resources = [PATIENT, glucose(140, "10"), glucose(95, "9")]  # 10 > 9 as numbers
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "x.ndjson", resources))
    assert_accounted(store, report)
    assert report.skipped_rules == {SUPERSEDED: 1}
    [measurement] = rows(store, "measurement")
    assert measurement["value_as_number"] == 140


def test_an_older_version_in_a_later_run_does_not_replace_a_newer_one(store, tmp_path):
    def run(name, observation):
        path = write_ndjson(tmp_path / name, [PATIENT, observation])
        report = ingest_path(store, "fhir", path, source_system="ehr")
        assert_accounted(store, report)
        return report

    run("a.ndjson", glucose(140, updated="2021-04-06T10:00:00+02:00"))
    stale = run("b.ndjson", glucose(95, updated="2021-04-06T07:30:00Z"))  # before 08:00Z
    assert stale.skipped_rules == {OLDER_THAN_STORED: 1} and stale.loaded == 0
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [140]
    newer = run("c.ndjson", glucose(101, updated="2021-04-07T00:00:00Z"))
    assert newer.loaded == 1
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [101]
    unversioned = run("d.ndjson", glucose(88))  # no version: read order decides, as before
    assert unversioned.loaded == 1
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [88]


def test_opaque_or_missing_version_ids_are_not_read_as_an_order(store, tmp_path):
    """versionId is opaque in FHIR (Medplum writes UUIDs): compared as text, a newer version
    whose UUID sorted lower was skipped as stale forever; and a store loaded from an export
    with lastUpdated only never took a later export's versions that carry a versionId."""

    def run(name, observation):
        path = write_ndjson(tmp_path / name, [PATIENT, observation])
        report = ingest_path(store, "fhir", path, source_system="ehr")
        assert_accounted(store, report)
        return report

    run("a.ndjson", glucose(140, "f1e4c2a0-0000-4000-8000-000000000000", "2021-04-06T08:00:00Z"))
    newer = run(
        "b.ndjson", glucose(95, "0a9b8c7d-0000-4000-8000-000000000000", "2021-04-07T08:00:00Z")
    )
    assert newer.loaded == 1 and _values(store) == ["95"]
    uuid_only = run("c.ndjson", glucose(96, "00000000-0000-4000-8000-000000000000"))
    assert uuid_only.loaded == 1 and _values(store) == ["96"], "no order known: read order"
    run("d.ndjson", glucose(97, updated="2021-04-08T08:00:00Z"))
    numbered = run("e.ndjson", glucose(98, "2", "2021-04-09T08:00:00Z"))
    assert numbered.loaded == 1 and _values(store) == ["98"]
    assert run("f.ndjson", glucose(99, "123456789012345678901234")).loaded == 1
    assert run("g.ndjson", glucose(90, "99999")).skipped_rules == {OLDER_THAN_STORED: 1}
