"""`flip site report`: tables, quarantine, unmapped codes and quality checks, as JSON and HTML."""

import json
import subprocess
import sys
from datetime import date

import orjson
from sqlalchemy import insert

from flip.data.cdm import schema
from flip.data.cdm.store import StoreError, open_store
from flip.data.ingest import ingest_path
from flip.data.validate.quality import run_checks
from flip.data.validate.report import build_report, render_html


def test_report_counts_rules_unmapped_and_failing_checks(store, exported):
    _, patients, folder = exported("fhir-ndjson", n=20)
    conditions = folder / "Condition.ndjson"
    lines = conditions.read_bytes().splitlines()
    odd = orjson.loads(lines[0])
    odd["id"] = "odd"
    odd["code"]["coding"][0]["code"] = "999999999"
    conditions.write_bytes(b"\n".join([*lines, orjson.dumps(odd), b"{broken"]) + b"\n")
    ingest_path(store, "fhir", folder)
    with store.begin() as conn:
        person_id = conn.execute(schema.person.select().limit(1)).first().person_id
        conn.execute(
            insert(schema.death).values(
                person_id=person_id, death_date=date(1900, 1, 1), death_type_concept_id=32817
            )
        )
    data = build_report(store)
    assert data["tables"]["person"] == len(patients)
    assert data["quarantine"]["by_rule"] == {"json.malformed": 1}
    assert {"table": "condition_occurrence", "source_value": "999999999", "rows": 1} in data[
        "unmapped"
    ]
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["plausibility.death_before_birth"]["status"] == "FAIL"
    assert checks["plausibility.after_death.measurement"]["failed"] > 0
    assert checks["conformance.observation_period"]["status"] == "PASS"
    page = render_html(data)
    assert (
        page.startswith("<!doctype html>")
        and "<script" not in page
        and "http" not in page.split("<body>")[1][:200]
    )
    assert "plausibility.death_before_birth" in page and 'class="FAIL"' in page


def test_checks_pass_on_clean_data(store, exported):
    _, _, folder = exported("csv", n=30)
    ingest_path(store, "csv", folder)
    failing = [c.name for c in run_checks(store) if c.status == "FAIL"]
    assert failing == []


def test_old_or_missing_store_gives_a_clear_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    s = open_store(path)
    with s.begin() as conn:
        schema.person.create(conn)
    try:
        s.check()
    except StoreError as exc:
        assert "flip site init" in str(exc)
    else:
        raise AssertionError("an unmigrated store must be refused")
    s.create()
    s.check()
    s.close()
    result = subprocess.run(
        [sys.executable, "-m", "flip", "site", "report", "--store", str(tmp_path / "none.duckdb")],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 1
        and result.stderr.count("\n") == 1
        and "flip site init" in result.stderr
    )


def test_report_cli_writes_json_and_html(tmp_path, exported):
    _, _, folder = exported("csv", n=10)
    store = str(tmp_path / "s.duckdb")
    flip = [sys.executable, "-m", "flip", "site"]
    subprocess.run(
        [*flip, "ingest", "csv", str(folder), "--store", store, "--json"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*flip, "report", "--store", store, "--json", "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["tables"]["person"] == 10
    assert (tmp_path / "r.html").read_text().count("<table>") >= 4
