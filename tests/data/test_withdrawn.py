"""A record loaded as a fact and later re-sent as not one (FHIR entered-in-error, refuted,
cancelled; an HL7 v2 result posted in error) loses the rows it produced, with their
provenance, counted as withdrawn; re-running changes nothing."""

from pathlib import Path

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

ORU = Path(__file__).parent / "fixtures" / "hl7v2" / "python-hl7_oru_r01_glucose.hl7"

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-02-01"}


def _condition(**status) -> dict:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2015-03-02",
        **status,
    }


def _provenance(store, key: str) -> int:
    s = schema.source_record
    with store.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(s).where(s.c.record_key == key)
        ).scalar_one()


def test_a_condition_re_sent_as_refuted_loses_its_rows(store, tmp_path):
    export = tmp_path / "ehr.ndjson"
    first = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, _condition()]))
    assert_accounted(store, first)
    assert len(rows(store, "condition_occurrence")) == 1 and _provenance(store, "Condition/c1")

    refuted = _condition(verificationStatus={"coding": [{"code": "refuted"}]})
    second = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, refuted]))
    assert_accounted(store, second)
    assert second.skipped_rules == {"fhir.verification.refuted": 1}
    assert (second.withdrawn, dict(second.withdrawn_rows)) == (1, {"condition_occurrence": 1})
    assert rows(store, "condition_occurrence") == [] and _provenance(store, "Condition/c1") == 0
    assert rows(store, "observation_period") == [], "the period followed its only fact"

    again = ingest_path(store, "fhir", export)
    assert_accounted(store, again)
    assert (again.withdrawn, again.unchanged, again.loaded) == (0, 1, 0)
    assert again.skipped_rules == {"fhir.verification.refuted": 1}

    back = ingest_path(store, "fhir", write_ndjson(export, [PATIENT, _condition()]))
    assert_accounted(store, back)
    assert back.loaded == 1 and len(rows(store, "condition_occurrence")) == 1


def test_a_withdrawal_in_the_same_run_supersedes_the_fact(store, tmp_path):
    entered = _condition(
        status="entered-in-error", verificationStatus={"coding": [{"code": "entered-in-error"}]}
    )
    export = write_ndjson(tmp_path / "ehr.ndjson", [PATIENT, _condition(), entered])
    report = ingest_path(store, "fhir", export)
    assert_accounted(store, report)
    assert report.skipped_rules == {
        "fhir.status.entered_in_error": 1,
        "identity.superseded_in_run": 1,
    }
    assert report.withdrawn == 0 and rows(store, "condition_occurrence") == []


def test_an_hl7_result_posted_in_error_is_withdrawn(store, tmp_path):
    first = ingest_path(store, "hl7v2", ORU)
    assert_accounted(store, first)
    held = len(rows(store, "measurement"))
    assert held == 1 and len(rows(store, "observation")) == 1, "SN glucose; FN kept as text"
    message = ORU.read_bytes().replace(b"|H|||F\r", b"|H|||W\r")
    (tmp_path / "correction.hl7").write_bytes(message)
    corrected = ingest_path(store, "hl7v2", tmp_path / "correction.hl7")
    assert_accounted(store, corrected)
    assert corrected.skipped_rules == {"hl7.obx.status.W": 2}
    removed = {"measurement": 1, "observation": 1}
    assert (corrected.withdrawn, dict(corrected.withdrawn_rows)) == (2, removed)
    assert rows(store, "measurement") == rows(store, "observation") == []
    again = ingest_path(store, "hl7v2", tmp_path / "correction.hl7")
    assert_accounted(store, again)
    assert again.withdrawn == 0 and again.skipped_rules == {"hl7.obx.status.W": 2}
