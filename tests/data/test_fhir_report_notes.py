"""FHIR DiagnosticReports that present their text (presentedForm) are notes, once per text."""

import base64
from pathlib import Path

import orjson

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

FHIR = Path(__file__).parent / "fixtures" / "fhir"
#: Synthea's sample Bundle (excerpt) and the note report it writes beside the excerpt's
#: DocumentReference (entry 12 of the same file, copied unchanged: see fixtures/fhir/README.md).
EXCERPT, REPORT = FHIR / "synthea_excerpt.json", FHIR / "synthea_note_report.json"
REPORT_KEY = "DiagnosticReport/d6aed4e0-ee78-8156-7296-a7bc4482998c"
LOINC = "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-02-03"}


def synthea_bundle(tmp_path: Path, with_document: bool = True) -> Path:
    """Synthea's Bundle as it writes it: the note report just before its DocumentReference."""
    bundle = orjson.loads(EXCERPT.read_bytes())
    entries = bundle["entry"]
    document = next(e for e in entries if e["resource"]["resourceType"] == "DocumentReference")
    at = entries.index(document)
    entries.insert(at, orjson.loads(REPORT.read_bytes()))
    if not with_document:
        entries.remove(document)
    path = tmp_path / "synthea.json"
    path.write_bytes(orjson.dumps(bundle))
    return path


def traced(store, table: str) -> dict[int, str]:
    """The record key behind each row of `table`."""
    from sqlalchemy import select

    from flip.data.cdm import schema

    source = schema.source_record
    with store.connect() as conn:
        found = conn.execute(
            select(source.c.cdm_id, source.c.record_key).where(source.c.cdm_table == table)
        )
        return {row.cdm_id: row.record_key for row in found}


def test_a_report_presenting_text_is_a_note_of_it(store, tmp_path):
    report = ingest_path(store, "fhir", synthea_bundle(tmp_path, with_document=False))
    assert report.quarantined == 0, report.rules
    assert report.rows["measurement"] == 0
    [note] = rows(store, "note")
    text = base64.b64decode(
        orjson.loads(REPORT.read_bytes())["resource"]["presentedForm"][0]["data"]
    )
    assert note["note_text"] == text.decode()
    assert note["note_title"] == "History and physical note"
    assert note["note_source_value"] == "34117-2"
    assert str(note["note_date"]) == "1985-01-08"
    assert traced(store, "note") == {note["note_id"]: REPORT_KEY}
    visits = {r["visit_occurrence_id"]: r for r in rows(store, "visit_occurrence")}
    assert str(visits[note["visit_occurrence_id"]]["visit_start_date"]) == "1985-01-08"
    [person] = rows(store, "person")
    assert note["person_id"] == person["person_id"]
    assert_accounted(store, report)


def test_synthea_writes_each_note_twice_and_it_is_stored_once(store, tmp_path):
    report = ingest_path(store, "fhir", synthea_bundle(tmp_path))
    assert report.quarantined == 0, report.rules
    assert report.skipped_rules["fhir.note.duplicate"] == 1
    assert report.rows["note"] == 1
    assert report.rows["measurement"] == 0
    [note] = rows(store, "note")
    assert traced(store, "note") == {note["note_id"]: REPORT_KEY}
    assert_accounted(store, report)
    again = ingest_path(store, "fhir", synthea_bundle(tmp_path))
    assert len(rows(store, "note")) == 1
    assert again.skipped_rules["fhir.note.duplicate"] == 1
    assert_accounted(store, again)


def report(id_: str, text: bytes, content_type: str, **extra) -> dict:
    form = {"contentType": content_type, "data": base64.b64encode(text).decode()}
    return {
        "resourceType": "DiagnosticReport",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24627-2", "display": "Chest CT"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-03-04T09:10:00Z",
        "presentedForm": [form],
        **extra,
    }


def test_a_report_with_results_keeps_them_and_its_html_text(store, tmp_path):
    glucose = {
        "resourceType": "Observation",
        "id": "g",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "code": "mmol/L"},
    }
    html = b"<html><body><h1>Report</h1><p>Glucose &lt; 6: <b>normal</b>.</p></body></html>"
    panel = report(
        "r1",
        html,
        "text/html",
        contained=[glucose],
        result=[{"reference": "#g"}],
        conclusion="No diabetes.",
    )
    result = ingest_path(store, "fhir", write_ndjson(tmp_path / "r.ndjson", [PATIENT, panel]))
    assert result.quarantined == 0, result.rules
    [measurement] = rows(store, "measurement")
    assert measurement["measurement_source_value"] == "2345-7"
    assert measurement["value_as_number"] is not None
    [note] = rows(store, "note")
    assert note["note_text"] == "Report\n\nGlucose < 6: normal.\n\nNo diabetes."
    assert note["note_title"] == "Chest CT"
    assert set(traced(store, "note").values()) == {"DiagnosticReport/r1"}
    assert_accounted(store, result)


def test_a_report_whose_text_is_not_in_its_charset_is_quarantined(store, tmp_path):
    bad = report("r2", "Befund: unauffällig".encode("latin-1"), "text/plain; charset=utf-8")
    result = ingest_path(store, "fhir", write_ndjson(tmp_path / "r.ndjson", [PATIENT, bad]))
    assert result.rules["fhir.note.encoding"] == 1
    assert rows(store, "note") == [] and rows(store, "measurement") == []
    assert_accounted(store, result)


def test_the_same_text_on_another_day_is_another_note(store, tmp_path):
    first = report("r3", b"Stable.", "text/plain")
    later = {**report("r4", b"Stable.", "text/plain"), "effectiveDateTime": "2021-03-05"}
    result = ingest_path(
        store, "fhir", write_ndjson(tmp_path / "r.ndjson", [PATIENT, first, later])
    )
    assert result.rows["note"] == 2
    assert "fhir.note.duplicate" not in result.skipped_rules
    assert_accounted(store, result)
