"""Issue 19 item 15: national data opt-out. A patient on the site's list is left out of every
count, histogram, feature row and training set at the site; the list is loaded (and
re-loaded) from the IG team's file, kept hashed, and the number left out is suppressed
when small."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.cohort import CohortDefinition, cohort_histograms, count_cohort
from flip.data.cohort.optout import OptOutError, load_optout, opted_out
from flip.data.features.tabular import extract_raw
from flip.data.ingest import ingest_path
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task
from flip.fl.tasks.base import load_raw_splits, load_splits

DIABETES = CohortDefinition(
    name="t2d",
    include=[{"table": "condition_occurrence", "concept_ids": [201826]}],
    histograms=["sex"],
)


def _person_id(store, identifier: str) -> int:
    person = schema.person
    with store.connect() as conn:
        return conn.execute(
            select(person.c.person_id).where(person.c.person_source_value == identifier)
        ).scalar_one()


def _sexes(patients) -> dict[str, int]:
    return {s: n for s in ("female", "male") if (n := sum(p.sex == s for p in patients))}


def test_an_opted_out_patient_changes_no_count_and_no_feature_row(store, exported, tmp_path):
    _, patients, folder = exported("fhir-bundle", n=60)
    ingest_path(store, "fhir", folder)
    spec = mace_task(scaling="fixed").data
    before = extract_raw(store, spec)
    diabetic = [p for p in patients if "diabetes" in p.conditions]
    gone = next(p for p in diabetic if _person_id(store, p.source_id) in before.person_ids)
    optout = tmp_path / "optout.txt"
    optout.write_text(f"# national data opt-out, as of today\n\n  {gone.source_id.lower()} \n")

    load_optout(store, optout, 10)

    rest = [p for p in patients if p is not gone]
    assert count_cohort(store, DIABETES) == sum("diabetes" in p.conditions for p in rest)
    t2d = [p for p in rest if "diabetes" in p.conditions]
    assert cohort_histograms(store, DIABETES)["sex"] == _sexes(t2d)
    everyone = CohortDefinition(name="all", histograms=["sex"])
    assert count_cohort(store, everyone) == len(rest)
    after = extract_raw(store, spec)
    kept = before.person_ids != _person_id(store, gone.source_id)
    assert len(after.person_ids) == len(before.person_ids) - 1
    np.testing.assert_array_equal(after.person_ids, before.person_ids[kept])
    np.testing.assert_array_equal(after.x, before.x[kept])
    np.testing.assert_array_equal(after.y, before.y[kept])


def test_no_training_set_at_the_site_holds_an_opted_out_patient(tmp_path, exported):
    _, patients, folder = exported("fhir-bundle", n=60)
    location = str(tmp_path / "store.duckdb")
    store = open_store(location)
    store.create()
    ingest_path(store, "fhir", folder)
    spec = mace_task()
    pids = {p.source_id: _person_id(store, p.source_id) for p in patients}
    store.close()
    train, test = load_raw_splits(location, spec)
    rows = len(train.person_ids) + len(test.person_ids)
    on_list = [s for s, pid in pids.items() if pid in train.person_ids][:3]
    (tmp_path / "optout.txt").write_text("\n".join(on_list))
    store = open_store(location)
    load_optout(store, tmp_path / "optout.txt", 10)
    store.close()

    train, test = load_raw_splits(location, spec)  # what the ClientApp trains on
    scaled_train, scaled_test, _ = load_splits(location, spec)  # local training
    held = {*train.person_ids, *test.person_ids, *scaled_train.person_ids, *scaled_test.person_ids}
    assert not held & {pids[s] for s in on_list}
    assert len(train.person_ids) + len(test.person_ids) == rows - len(on_list)


def flip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_loads_and_reloads_the_list_idempotently_and_suppresses_a_small_count(
    tmp_path, exported
):
    _, patients, folder = exported("fhir-bundle", n=40)
    location = str(tmp_path / "store.duckdb")
    store = open_store(location)
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    listed = [p.source_id for p in patients[:3]] + ["NOT-A-PATIENT-HERE"]
    optout = tmp_path / "optout.txt"
    optout.write_text("\n".join(listed) + "\n")

    def load(*extra: str) -> dict:
        result = flip("site", "optout", "load", str(optout), "--store", location, "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first = load()
    assert first == {
        "identifiers": 4,
        "added": 4,
        "removed": 0,
        "excluded": None,
        "suppressed": True,
        "threshold": 10,
    }, "3 persons left out is below the threshold: the number is not shown"
    assert load() == first | {"added": 0}, "the same file again changes nothing"
    assert load("--min-cell", "3") == first | {
        "added": 0,
        "excluded": 3,
        "suppressed": False,
        "threshold": 3,
    }

    store = open_store(location, read_only=True)
    with store.connect() as conn:
        hashes = set(conn.execute(select(schema.optout.c.identifier_hash)).scalars())
    assert len(hashes) == 4 and not hashes & {s.upper() for s in listed}, "kept hashed"
    assert count_cohort(store, CohortDefinition(name="all")) == len(patients) - 3
    store.close()

    optout.write_text(patients[0].source_id + "\n")
    again = load()
    assert (again["identifiers"], again["added"], again["removed"]) == (1, 0, 3)
    store = open_store(location, read_only=True)
    assert count_cohort(store, CohortDefinition(name="all")) == len(patients) - 1
    store.close()

    site = tmp_path / "site.yaml"
    site.write_text(
        "name: a\nstore: store.duckdb\nledger: ledger.sqlite\npolicy:\n  min_cell_size: 1\n"
    )
    assert load("--site-config", str(site))["excluded"] == 1
    entries = Ledger(tmp_path / "ledger.sqlite").entries()
    assert [e["action"] for e in entries] == ["optout.loaded"]
    assert json.loads(entries[0]["detail"])["excluded"] == 1


def test_a_bad_line_loads_nothing_and_names_the_line(tmp_path, store):
    good = tmp_path / "good.txt"
    good.write_text("A1\nA2\n")
    load_optout(store, good, 10)
    bad = tmp_path / "bad.txt"
    bad.write_text("A1\n" + "9" * 51 + "\n")
    with pytest.raises(OptOutError, match=r"bad.txt:2: an identifier has at most 50"):
        load_optout(store, bad, 10)
    with store.connect() as conn:
        assert len(conn.execute(select(schema.optout)).all()) == 2


def test_the_ig_teams_file_loads_as_notepad_or_excel_saves_it(tmp_path, store):
    with store.begin() as conn:
        conn.execute(
            schema.person.insert(),
            [
                {
                    "person_id": pid,
                    "gender_concept_id": 8507,
                    "year_of_birth": 1950,
                    "race_concept_id": 0,
                    "ethnicity_concept_id": 0,
                    "person_source_value": value,
                }
                for pid, value in ((1, "9434765919"), (2, "MRN0002"), (3, "MRN0003"))
            ],
        )
    notepad = tmp_path / "notepad.txt"
    notepad.write_bytes(b"\xef\xbb\xbf943 476 5919\r\nmrn0002\r\n")
    excel = tmp_path / "excel.txt"
    excel.write_bytes("943 476 5919\r\nMRN0002\r\n".encode("utf-16"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"MRN0002\r\nMRN\xe9\r\n")

    for written in (notepad, excel):
        assert load_optout(store, written, 1).identifiers == 2, written.name
        with store.connect() as conn:
            assert opted_out(conn) == {1, 2}, written.name
    with pytest.raises(OptOutError, match=r"latin.txt:2: not UTF-8 or UTF-16"):
        load_optout(store, latin, 1)
