"""Athena and SNOMED CT RF2 loaders on fixtures in the releases' exact formats, and `vocab map`."""

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.terminology import Vocabulary
from flip.data.terminology.athena import load_athena
from flip.data.terminology.explain import explain
from flip.data.terminology.snomed import load_rf2

FIXTURES = Path(__file__).parent / "fixtures"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _count(store, table) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_gzipped_athena_download_loads_like_the_plain_one(store, tmp_path):
    for path in (FIXTURES / "athena").iterdir():
        (tmp_path / f"{path.name.lower()}.gz").write_bytes(gzip.compress(path.read_bytes()))
    assert load_athena(store, tmp_path) == load_athena(store, FIXTURES / "athena")


def test_athena_folder_loads_and_reloading_replaces(store):
    before = _count(store, schema.concept)
    counts = load_athena(store, FIXTURES / "athena")
    assert counts == {
        "vocabulary": 1,
        "concept": 3,
        "concept_relationship": 2,
        "concept_ancestor": 3,
        "concept_synonym": 1,
    }
    after = _count(store, schema.concept)
    assert after == before + 2
    load_athena(store, FIXTURES / "athena")
    assert _count(store, schema.concept) == after
    mapping = Vocabulary.from_store(store).map(ICD10CM, "I21.9")
    assert (mapping.concept_id, mapping.source_concept_id, mapping.domain_id) == (
        312327,
        45572081,
        "Condition",
    )


def test_rf2_snapshot_becomes_concepts_links_and_ancestry(store):
    counts = load_rf2(store, FIXTURES / "rf2")
    assert counts["concept"] == 6
    with store.connect() as conn:
        c = schema.concept
        mi = conn.execute(
            select(c).where(c.c.vocabulary_id == "SNOMED", c.c.concept_code == "22298006")
        ).one()
        retired = conn.execute(select(c).where(c.c.concept_code == "10000006")).one()
        ancestors = conn.execute(
            select(
                schema.concept_ancestor.c.ancestor_concept_id,
                schema.concept_ancestor.c.max_levels_of_separation,
            ).where(schema.concept_ancestor.c.descendant_concept_id == mi.concept_id)
        ).all()
        finding = conn.execute(
            select(c.c.concept_id).where(c.c.concept_code == "404684003")
        ).scalar_one()
    assert mi.concept_id == 4329847, "a concept already in the store keeps its OMOP id"
    assert mi.concept_name == "Heart attack" and mi.domain_id == "Condition"
    assert retired.invalid_reason == "D" and retired.standard_concept is None
    assert dict(ancestors)[finding] == 4, "the inactive direct IS-A is ignored; the path is 4 deep"
    assert len(ancestors) == 5
    load_rf2(store, FIXTURES / "rf2")
    assert _count(store, schema.concept_ancestor) == counts["concept_ancestor"]


def test_explain_names_source_target_table_and_reason(store):
    load_athena(store, FIXTURES / "athena")
    result = explain(store, ICD10CM, "I21.9")
    assert result["source_concept"]["concept_id"] == 45572081
    assert result["standard_concept"]["concept_name"] == "Acute myocardial infarction"
    assert result["cdm_table"] == "condition_occurrence"
    assert "Maps to" in result["reason"]
    unknown = explain(store, "urn:nowhere", "X1")
    assert unknown["standard_concept"] is None and "unknown code system" in unknown["reason"]


def test_vocab_map_cli(tmp_path):
    store = str(tmp_path / "s.duckdb")

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "flip", "site", *a], capture_output=True, text=True
        )

    assert run("init", "--store", store).returncode == 0
    ok = run(
        "vocab", "map", "I21.9", "--system", "http://hl7.org/fhir/sid/icd-10", "--store", store
    )
    assert (
        ok.returncode == 0
        and "4329847 Myocardial infarction" in ok.stdout
        and "condition_occurrence" in ok.stdout
    )
    missing = run(
        "vocab", "map", "Z99", "--system", "http://hl7.org/fhir/sid/icd-10", "--store", store
    )
    assert missing.returncode == 1 and "concept_id 0" in missing.stdout


def test_an_exports_own_vocabulary_loads_whatever_its_dates_and_delimiter(store, tmp_path):
    export = FIXTURES / "omop" / "eunomia_export"
    counts = load_athena(store, export)
    assert counts == {"concept": 25}, "comma-separated, quoted, upper-case headers"
    loaded = _count(store, schema.concept)
    with store.connect() as conn:
        c = schema.concept
        dates = conn.execute(
            select(c.c.valid_start_date, c.c.valid_end_date).where(c.c.concept_id == 0)
        ).one()
    assert [d.isoformat() for d in dates] == ["1970-01-01", "2099-12-31"], "unpadded ISO read"
    assert load_athena(store, export) == counts
    assert _count(store, schema.concept) == loaded, "a reload replaces, it adds nothing"


def test_a_bad_vocabulary_line_is_an_error_naming_file_line_and_column(store, tmp_path):
    folder = tmp_path / "athena"
    shutil.copytree(FIXTURES / "athena", folder)
    concept = folder / "CONCEPT.csv"
    lines = concept.read_text().splitlines()
    lines[2] = lines[2].replace("20020131", "2002-02-31")
    concept.write_text("\n".join(lines) + "\n")
    before = _count(store, schema.concept)
    with pytest.raises(ValueError, match=r"CONCEPT\.csv:3: valid_start_date"):
        load_athena(store, folder)
    assert _count(store, schema.concept) == before, "nothing of the file is written"


def test_a_repeated_vocabulary_key_is_an_error_naming_file_and_lines(store, tmp_path):
    folder = tmp_path / "athena"
    shutil.copytree(FIXTURES / "athena", folder)
    concept = folder / "CONCEPT.csv"
    lines = concept.read_text().splitlines()
    concept.write_text("\n".join([*lines, lines[1]]) + "\n")
    before = _count(store, schema.concept)
    with pytest.raises(
        ValueError, match=rf"CONCEPT\.csv: two concept rows .* \(lines 2, {len(lines) + 1}\)"
    ):
        load_athena(store, folder)
    assert _count(store, schema.concept) == before, "nothing of the file is written"


def test_a_latin1_vocabulary_file_loads(store, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    header = "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
    row = "2000000999,Sj\xf6gren,Condition,SNOMED,Clinical Finding,S,X1,1970-1-1,2099-12-31,\n"
    text = header + "concept_code,valid_start_date,valid_end_date,invalid_reason\n" + row
    (folder / "CONCEPT.csv").write_bytes(text.encode("latin-1"))
    assert load_athena(store, folder) == {"concept": 1}
    with store.connect() as conn:
        name = conn.execute(
            select(schema.concept.c.concept_name).where(schema.concept.c.concept_id == 2000000999)
        ).scalar_one()
    assert name == "Sjögren"
