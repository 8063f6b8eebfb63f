"""`flip site ingest` exits 1 with a one-line reason when nothing loaded."""

from typer.testing import CliRunner

from flip.cli.app import app


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
