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
