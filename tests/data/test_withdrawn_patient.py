"""A Patient re-sent as entered-in-error: its person goes, with its death row and
provenance, unless a row or another source system still names it; then it is kept and
the run says so (withdrawn.person_kept)."""

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

SYNTHEA = Path(__file__).parent / "fixtures" / "fhir" / "synthea_excerpt.json"
KEPT = "withdrawn.person_kept"
FACTS = ("Encounter", "Condition", "DocumentReference")
ENTERED_IN_ERROR = {"status": "entered-in-error"}


def _bundle(path: Path, keep: Callable[[str], bool], entered: Callable[[str], bool]) -> Path:
    """Synthea's bundle with the entries of the types `keep` says, those `entered` says
    marked entered-in-error."""
    bundle = json.loads(SYNTHEA.read_text())
    entries = []
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        if keep(kind):
            if entered(kind):
                entry["resource"]["status"] = "entered-in-error"
            entries.append(entry)
    path.write_text(json.dumps({**bundle, "entry": entries}))
    return path


def _every(kind: str) -> bool:
    return True


def _none(kind: str) -> bool:
    return False


def _patient(kind: str) -> bool:
    return kind == "Patient"


def test_a_patient_whose_facts_stay_is_kept_with_a_warning(store, tmp_path):
    export = tmp_path / "bundle.json"
    first = ingest_path(store, "fhir", _bundle(export, _every, _none))
    assert_accounted(store, first)
    facts = len(rows(store, "condition_occurrence"))
    assert facts == 2
    second = ingest_path(store, "fhir", _bundle(export, _every, _patient))
    assert_accounted(store, second)
    assert second.warnings[KEPT] == 1 and second.withdrawn == 0
    assert second.skipped_rules["fhir.status.entered_in_error"] == 1
    assert len(rows(store, "person")) == 1 and len(rows(store, "condition_occurrence")) == facts


def test_a_patient_with_nothing_left_naming_it_is_removed(store, tmp_path):
    export = tmp_path / "bundle.json"
    assert ingest_path(store, "fhir", _bundle(export, _patient, _none)).loaded == 1
    second = ingest_path(store, "fhir", _bundle(export, _patient, _patient))
    assert_accounted(store, second)
    assert (second.withdrawn, dict(second.withdrawn_rows)) == (1, {"person": 1})
    assert KEPT not in second.warnings
    assert rows(store, "person") == [] and rows(store, "observation_period") == []
    again = ingest_path(store, "fhir", export)
    assert_accounted(store, again)
    assert (again.withdrawn, again.loaded, dict(again.warnings)) == (0, 0, {})


def test_a_patient_and_its_facts_entered_in_error_together_all_go(store, tmp_path):
    export = tmp_path / "bundle.json"
    ingest_path(store, "fhir", _bundle(export, _every, _none))
    second = ingest_path(store, "fhir", _bundle(export, _every, lambda kind: kind != "Claim"))
    assert_accounted(store, second)
    assert second.withdrawn == 6 and KEPT not in second.warnings, second.as_dict()
    for table in ("person", "visit_occurrence", "condition_occurrence", "note"):
        assert rows(store, table) == [], table


def test_facts_sent_after_their_patient_was_removed_are_dangling(store, tmp_path):
    export = tmp_path / "bundle.json"
    ingest_path(store, "fhir", _bundle(export, _patient, _none))
    report = ingest_path(
        store, "fhir", _bundle(export, lambda kind: kind in ("Patient", *FACTS), _patient)
    )
    assert_accounted(store, report)
    assert report.withdrawn == 1 and rows(store, "person") == []
    assert report.rules == {"reference.withdrawn": 5}, report.as_dict()
    assert rows(store, "condition_occurrence") == rows(store, "visit_occurrence") == []


def test_a_kept_patient_goes_once_its_facts_are_withdrawn(store, tmp_path):
    """The person kept for its facts stays withdrawn: re-reading its earlier copy does not
    revive it, and once a correction withdraws the facts it is removed."""
    export = tmp_path / "bundle.json"
    first = _bundle(tmp_path / "first.json", _every, _none)
    ingest_path(store, "fhir", first, source_system="ehr")
    kept = ingest_path(store, "fhir", _bundle(export, _every, _patient), source_system="ehr")
    assert kept.warnings[KEPT] == 1
    again = ingest_path(store, "fhir", first, source_system="ehr")
    assert_accounted(store, again)
    assert (again.loaded, again.withdrawn) == (0, 0), again.as_dict()
    facts = _bundle(export, lambda kind: kind != "Patient", _every)
    fixed = ingest_path(store, "fhir", facts, source_system="ehr")
    assert_accounted(store, fixed)
    assert fixed.withdrawn_rows["person"] == 1 and KEPT not in fixed.warnings, fixed.as_dict()
    for table in ("person", "visit_occurrence", "condition_occurrence", "observation_period"):
        assert rows(store, table) == [], table


def test_a_kept_patient_goes_when_a_re_export_prunes_its_facts(store, tmp_path):
    export = tmp_path / "bundle.json"
    ingest_path(store, "fhir", _bundle(export, _every, _none))
    ingest_path(store, "fhir", _bundle(export, _every, _patient))
    pruned = ingest_path(store, "fhir", _bundle(export, _patient, _patient), prune=True)
    assert_accounted(store, pruned)
    assert rows(store, "person") == [] and rows(store, "condition_occurrence") == []


def test_facts_of_a_patient_first_seen_entered_in_error_say_it_was_withdrawn(store, tmp_path):
    export = tmp_path / "bundle.json"
    report = ingest_path(
        store, "fhir", _bundle(export, lambda k: k in ("Patient", *FACTS), _patient)
    )
    assert_accounted(store, report)
    assert report.rules == {"reference.withdrawn": 5}, report.as_dict()
    with store.connect() as conn:
        messages = conn.execute(select(schema.quarantine.c.message)).scalars().all()
    assert all("entered_in_error" in m and "withdrew" in m for m in messages), messages


def test_a_kept_patient_goes_when_its_facts_are_re_filed_under_another(store, tmp_path):
    def patient(pid: str, **more) -> dict:
        return {"resourceType": "Patient", "id": pid, "birthDate": "1970-01-01", **more}

    def condition(subject: str) -> dict:
        return {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": f"Patient/{subject}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "onsetDateTime": "2020-01-01",
        }

    def ingest(name: str, resources: list[dict]):
        report = ingest_path(
            store, "fhir", write_ndjson(tmp_path / name, resources), source_system="ehr"
        )
        assert_accounted(store, report)
        return report

    ingest("a.ndjson", [patient("p1"), patient("p2"), condition("p1")])
    kept = ingest("b.ndjson", [patient("p1", active=False, **ENTERED_IN_ERROR)])
    assert kept.warnings[KEPT] == 1 and len(rows(store, "person")) == 2
    refiled = ingest("c.ndjson", [condition("p2")])
    assert refiled.withdrawn_rows["person"] == 1, refiled.as_dict()
    (left,) = rows(store, "person")
    assert [c["person_id"] for c in rows(store, "condition_occurrence")] == [left["person_id"]]


def test_a_later_run_naming_a_withdrawn_patient_is_told_why(store, tmp_path):
    """The withdrawal outlives its run: a fact a later run sends for the patient is
    quarantined as reference.withdrawn naming the status rule, not as dangling; once the
    patient is sent again as a fact, its facts load."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2020-01-01",
    }

    def ingest(name: str, resources: list[dict]):
        path = write_ndjson(tmp_path / name, resources)
        report = ingest_path(store, "fhir", path, source_system="ehr")
        assert_accounted(store, report)
        return report

    ingest("patient.ndjson", [patient])
    gone = ingest("gone.ndjson", [{**patient, **ENTERED_IN_ERROR}])
    assert gone.withdrawn == 1 and rows(store, "person") == []
    later = ingest("later.ndjson", [condition])
    assert later.rules == {"reference.withdrawn": 1}, later.as_dict()
    with store.connect() as conn:
        quarantine = schema.quarantine
        (message,) = conn.execute(
            select(quarantine.c.message).where(quarantine.c.ingest_run_id == later.run_id)
        ).scalars()
    assert "Patient/p1" in message and "entered_in_error" in message, message
    ingest("back.ndjson", [patient])
    back = ingest("later.ndjson", [condition])
    assert back.quarantined == 0 and len(rows(store, "condition_occurrence")) == 1
