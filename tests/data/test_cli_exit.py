"""`flip site ingest` exits 1 with a one-line reason when nothing loaded (or withdrawn)."""

import json

from typer.testing import CliRunner

from flip.cli.app import app
from tests.data.stored import write_ndjson


def test_an_empty_file_exits_1_saying_nothing_was_read(tmp_path):
    empty = tmp_path / "feed.hl7"
    empty.write_bytes(b"")
    store = str(tmp_path / "s.duckdb")
    result = CliRunner().invoke(app, ["site", "ingest", "hl7v2", str(empty), "--store", store])
    assert result.exit_code == 1
    assert f"error: nothing read from {empty}" in result.output


def test_a_file_of_bad_records_exits_1_saying_none_loaded(tmp_path):
    bad = tmp_path / "bad.ndjson"
    bad.write_text("garbage\n")
    store = str(tmp_path / "s.duckdb")
    args = ["site", "ingest", "fhir", str(bad), "--store", store, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "error: nothing loaded: 1 quarantined, 0 skipped" in result.output


def test_a_correction_only_batch_succeeds_and_reports_what_it_withdrew(tmp_path):
    """A batch of entered-in-error copies alone, under the original's --system, loads
    nothing and withdraws what it corrects: that is a success."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2020-01-01",
    }
    entered = {**condition, "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
    store = str(tmp_path / "s.duckdb")
    base = ["site", "ingest", "fhir", "--store", store, "--system", "ehr"]
    first = write_ndjson(tmp_path / "export.ndjson", [patient, condition])
    assert CliRunner().invoke(app, [*base, str(first)]).exit_code == 0
    fix = write_ndjson(tmp_path / "correction.ndjson", [entered])
    result = CliRunner().invoke(app, [*base, str(fix), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[0])
    assert (report["loaded"], report["withdrawn"]) == (0, 1)
    assert report["withdrawn_rows"] == {"condition_occurrence": 1}
