"""A site's harmonisation report and data-quality release: aggregates only, rare codes unnamed."""

import pytest

from flip.data.cdm.store import open_store
from flip.data.features.harmonisation import OTHER, HarmonisationSpec, harmonisation_release
from flip.data.ingest import ingest_path
from flip.data.validate.released import quality_release

SYSTOLIC, HBA1C = 3004249, 3004410


@pytest.fixture
def store(tmp_path, exported):
    _, _, folder = exported("fhir-bundle", n=60)
    made = open_store(tmp_path / "store.duckdb")
    made.create()
    ingest_path(made, "fhir", folder)
    yield made
    made.close()


def test_each_concept_names_the_source_codes_that_map_to_it(store):
    report = harmonisation_release(store, HarmonisationSpec(concept_ids=[SYSTOLIC, HBA1C]), 1)
    systolic = report["concepts"][str(SYSTOLIC)]
    assert systolic["table"] == "measurement"
    assert systolic["rows"] == sum(systolic["sources"].values()) > 0
    assert all("|" in code for code in systolic["sources"])
    table = report["tables"]["measurement"]
    assert table["mapped"] <= table["rows"]


def test_a_code_of_fewer_rows_than_the_smallest_cell_is_never_named(store):
    everything = harmonisation_release(store, HarmonisationSpec(concept_ids=[SYSTOLIC]), 1)
    rows = everything["concepts"][str(SYSTOLIC)]["rows"]
    report = harmonisation_release(store, HarmonisationSpec(concept_ids=[SYSTOLIC]), rows + 1)
    systolic = report["concepts"][str(SYSTOLIC)]
    assert systolic["rows"] == f"<{rows + 1}"
    assert list(systolic["sources"]) == [OTHER]
    assert set(report["tables"]["measurement"]["unmapped"]) <= {OTHER}


def test_the_quality_release_withholds_a_share_beside_a_small_count(store):
    plain = quality_release(store, 1)
    assert plain["completeness"]["person.year_of_birth"] == {"rows": 60, "part": 60, "share": 1.0}
    strict = quality_release(store, 61)
    assert strict["completeness"]["person.year_of_birth"] == {
        "rows": "<61",
        "part": "<61",
        "share": None,
    }
    assert all(q == "<61" or q == 0 for q in strict["quarantine"].values())
