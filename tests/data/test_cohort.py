import pytest

from flip.data.cohort import CohortDefinition, count_cohort, suppress
from flip.data.ingest import ingest_path


def test_suppression_releases_zero_and_counts_at_or_above_threshold():
    assert suppress(0, 10).count == 0
    assert suppress(9, 10).suppressed and suppress(9, 10).count is None
    assert suppress(10, 10).count == 10
    with pytest.raises(ValueError):
        suppress(5, 0)


def test_counts_follow_criteria(store, exported):
    _, patients, folder = exported("fhir-bundle", n=60)
    ingest_path(store, "fhir", folder)
    diabetes = {"table": "condition_occurrence", "concept_ids": [201826]}
    high_bp = {"table": "measurement", "concept_ids": [3004249], "value_min": 140}
    expect_diab = sum("diabetes" in p.conditions for p in patients)
    expect_both = sum("diabetes" in p.conditions and p.measurements["sbp"] >= 140 for p in patients)
    expect_women_no_diab = sum(
        p.sex == "female" and "diabetes" not in p.conditions for p in patients
    )
    assert count_cohort(store, CohortDefinition(name="d", include=[diabetes])) == expect_diab
    assert (
        count_cohort(store, CohortDefinition(name="b", include=[diabetes, high_bp])) == expect_both
    )
    women = CohortDefinition(name="w", exclude=[diabetes], sex=["female"])
    assert count_cohort(store, women) == expect_women_no_diab


def test_value_ranges_only_on_tables_with_values():
    with pytest.raises(ValueError):
        CohortDefinition.model_validate(
            {
                "name": "x",
                "include": [{"table": "condition_occurrence", "concept_ids": [1], "value_min": 1}],
            }
        )


def test_a_concept_stands_for_its_descendants(store, exported):
    from pathlib import Path

    from sqlalchemy import select

    from flip.data.cdm import schema
    from flip.data.terminology.snomed import load_rf2

    _, patients, folder = exported("fhir-bundle", n=80)
    ingest_path(store, "fhir", folder)
    load_rf2(store, Path(__file__).parent / "fixtures" / "rf2")
    with store.connect() as conn:
        c = schema.concept
        ischaemic = conn.execute(
            select(c.c.concept_id).where(c.c.concept_code == "414545008")
        ).scalar_one()
    mi = sum("mi" in p.conditions for p in patients)
    assert mi > 0
    broad = {"table": "condition_occurrence", "concept_ids": [ischaemic]}
    assert count_cohort(store, CohortDefinition(name="ihd", include=[broad])) == mi
    exact = broad | {"descendants": False}
    assert count_cohort(store, CohortDefinition(name="ihd only", include=[exact])) == 0


def test_has_an_image_of_a_modality(store, tmp_path):
    import orjson

    from tests.data.test_fhir_resources import PATIENT, RESOURCES

    imaging = [r for r in RESOURCES if r["resourceType"] == "ImagingStudy"]
    path = tmp_path / "imaging.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [PATIENT, *imaging]) + b"\n")
    ingest_path(store, "fhir", path)
    scanned = {"table": "image_occurrence", "concept_ids": [0], "descendants": False}
    assert count_cohort(store, CohortDefinition(name="any CT", include=[scanned])) == 1
    assert count_cohort(store, CohortDefinition(name="none", exclude=[scanned])) == 0
