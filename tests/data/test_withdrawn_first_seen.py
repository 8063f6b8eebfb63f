"""A record first seen as not a fact is skipped by its status rule alone; a withdrawal
that finds nothing stored is warned about only when the record says an earlier version
of it was sent (an HL7 OBX-11 D or W, a FHIR meta.versionId above 1)."""

import json
from pathlib import Path

from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHEA = FIXTURES / "fhir" / "synthea_excerpt.json"
ORU = FIXTURES / "hl7v2" / "python-hl7_oru_r01_glucose.hl7"
NOTHING = "withdrawn.nothing_stored"
ENTERED = {"verificationStatus": {"coding": [{"code": "entered-in-error"}]}}


def _synthea(tmp_path: Path, **changes) -> Path:
    """Synthea's bundle with its Conditions changed (e.g. entered in error)."""
    bundle = json.loads(SYNTHEA.read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Condition":
            entry["resource"].update(changes)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    return path


def test_conditions_first_seen_entered_in_error_are_skipped_by_their_rule_alone(store, tmp_path):
    plain = open_store(tmp_path / "plain.duckdb")
    plain.create()
    baseline = ingest_path(plain, "fhir", SYNTHEA)
    report = ingest_path(store, "fhir", _synthea(tmp_path, **ENTERED))
    assert_accounted(store, report)
    assert report.skipped_rules == {"fhir.type.not_read": 1, "fhir.status.entered_in_error": 2}
    assert report.rows["condition_occurrence"] == 0 and report.rows["person"] == 1
    assert report.withdrawn == 0 and report.warnings == baseline.warnings
    assert NOTHING not in report.warnings


def test_a_later_version_entered_in_error_with_nothing_stored_is_warned_about(store, tmp_path):
    report = ingest_path(store, "fhir", _synthea(tmp_path, meta={"versionId": "2"}, **ENTERED))
    assert_accounted(store, report)
    assert report.warnings[NOTHING] == 2 and report.withdrawn == 0
    assert report.skipped_rules["fhir.status.entered_in_error"] == 2


def test_an_hl7_correction_of_a_result_never_loaded_is_warned_about(store, tmp_path):
    corrected = tmp_path / "correction.hl7"
    corrected.write_bytes(ORU.read_bytes().replace(b"|H|||F\r", b"|H|||W\r"))
    report = ingest_path(store, "hl7v2", corrected)
    assert_accounted(store, report)
    assert report.skipped_rules == {"hl7.obx.status.W": 2}
    assert report.warnings[NOTHING] == 2 and rows(store, "measurement") == []


def test_an_hl7_result_that_could_not_be_obtained_withdraws_nothing_and_warns_nothing(
    store, tmp_path
):
    missing = tmp_path / "missing.hl7"
    missing.write_bytes(ORU.read_bytes().replace(b"|H|||F\r", b"|H|||X\r"))
    report = ingest_path(store, "hl7v2", missing)
    assert_accounted(store, report)
    assert report.skipped_rules == {"hl7.obx.status.X": 2}
    assert NOTHING not in report.warnings
