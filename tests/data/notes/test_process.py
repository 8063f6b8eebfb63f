"""`flip site notes process` on a real DuckDB store holding the world's letters."""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from flip.cli.app import app
from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.cohort.definition import CohortDefinition, Criterion
from flip.data.cohort.sql import count_cohort
from flip.data.notes.process import process_notes

PSORIASIS = 140168


def _store_with_letters(path, labelled_letters):
    store = open_store(path)
    store.create()
    letters = _fill(store, labelled_letters)
    store.close()
    return letters


def _fill(store, labelled_letters):
    letters = [json.loads(line) for line in labelled_letters[0].read_text().splitlines()]
    with store.begin() as conn:
        starter = conn.execute(
            select(schema.concept.c.concept_code).where(schema.concept.c.concept_id == PSORIASIS)
        ).scalar_one()
        assert starter == "9014002", "the starter vocabulary holds psoriasis"
        conn.execute(
            insert(schema.person),
            [
                {
                    "person_id": i + 1,
                    "gender_concept_id": 8532,
                    "year_of_birth": 1970,
                    "race_concept_id": 0,
                    "ethnicity_concept_id": 0,
                }
                for i in range(len(letters))
            ],
        )
        conn.execute(
            insert(schema.note),
            [
                {
                    "note_id": i + 1,
                    "person_id": i + 1,
                    "note_date": date(2024, 1, 1),
                    "note_type_concept_id": 32831,
                    "note_class_concept_id": 0,
                    "note_text": letter["text"],
                    "encoding_concept_id": 0,
                    "language_concept_id": 0,
                }
                for i, letter in enumerate(letters)
            ],
        )
    return letters


def test_process_writes_note_nlp_once_and_without_identifiers(tmp_path, labelled_letters):
    path = str(tmp_path / "store.duckdb")
    letters = _store_with_letters(path, labelled_letters)
    runs = [
        CliRunner().invoke(app, ["site", "notes", "process", "--store", path, "--json"])
        for _ in range(2)
    ]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].output
    first, second = (json.loads(r.output) for r in runs)
    assert first == second and first["notes"] == len(letters) and first["rows"] > len(letters)
    store = open_store(path, read_only=True)
    nlp = schema.note_nlp
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(nlp)).scalar() == first["rows"]
        rows = conn.execute(select(nlp)).mappings().all()
    store.close()
    psoriasis = {
        r["note_nlp_concept_id"] for r in rows if r["lexical_variant"].endswith("soriasis")
    }
    assert psoriasis == {PSORIASIS}
    assert {r["term_exists"] for r in rows} == {"Y", "N"}
    snippets = " ".join(r["snippet"] for r in rows)
    for letter in letters:
        for span in letter["phi"]:
            if len(span["text"]) > 4:
                assert span["text"] not in snippets, span


def test_cohort_counts_people_whose_notes_affirm_a_concept(tmp_path, labelled_letters):
    path = str(tmp_path / "store.duckdb")
    letters = _store_with_letters(path, labelled_letters)
    assert CliRunner().invoke(app, ["site", "notes", "process", "--store", path]).exit_code == 0
    store = open_store(path, read_only=True)
    affirmed = CohortDefinition(
        name="psoriasis in a letter",
        include=[Criterion(table="note_nlp", concept_ids=[PSORIASIS], descendants=False)],
    )
    n = count_cohort(store, affirmed)
    store.close()
    expected = sum("1. Chronic plaque psoriasis" in letter["text"] for letter in letters)
    assert n == expected > 0


def test_process_notes_on_every_backend(store, labelled_letters):
    letters = _fill(store, labelled_letters[:1])
    first = process_notes(store, today=date(2026, 1, 2))
    second = process_notes(store, today=date(2026, 1, 2))
    assert first == second and first.notes == len(letters) and first.affirmed > 0
    nlp = schema.note_nlp
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(nlp)).scalar() == first.rows
        ids = conn.execute(select(nlp.c.note_nlp_id)).scalars().all()
    assert len(set(ids)) == len(ids)


def test_process_refuses_a_missing_store_in_one_line(tmp_path):
    result = CliRunner().invoke(
        app, ["site", "notes", "process", "--store", str(tmp_path / "none.duckdb")]
    )
    assert result.exit_code == 1
    assert "no store at" in result.output and len(result.output.strip().splitlines()) == 1
