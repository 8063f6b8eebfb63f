from datetime import date

import pytest

from flip.data.cohort import (
    CohortDefinition,
    cohort_histograms,
    count_cohort,
    rounded,
    suppress,
    suppress_bins,
)
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


@pytest.mark.parametrize(
    ("definition", "where"),
    [
        (
            {"name": "x", "includes": [{"table": "condition_occurrence", "concept_ids": [1]}]},
            "includes",
        ),
        ({"name": "x", "age_minimum": 60}, "age_minimum"),
        (
            {"name": "x", "include": [{"table": "measurement", "concept_id": [1]}]},
            "include.0.concept_id",
        ),
    ],
)
def test_a_misspelt_key_is_refused_not_ignored(definition, where):
    """Ignored, `includes` would count every person and `age_minimum` every age."""
    from pydantic import ValidationError

    from flip.problems import first_problem

    with pytest.raises(ValidationError) as refused:
        CohortDefinition.model_validate(definition)
    assert f"{where}: unknown key" in first_problem(refused.value)


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


def _note_document(pid: str, text: str) -> dict:
    import base64

    return {
        "resourceType": "DocumentReference",
        "id": f"doc-{pid}",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "date": "2021-03-01T10:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }


def test_has_a_note_mentioning_a_concept_by_name_synonym_or_nlp(store, tmp_path):
    import orjson
    from sqlalchemy import insert, select

    from flip.data.cdm import schema

    texts = {
        "p1": "Admitted with an acute MYOCARDIAL INFARCTION last spring.",
        "p2": "Seen for a heart attack in 2019.",
        "p3": "Routine review, nothing of note.",
        "p4": "Routine review; coded by the NLP pipeline.",
    }
    resources = []
    for pid, text in texts.items():
        patient = {"resourceType": "Patient", "id": pid, "birthDate": "1960-01-01"}
        resources += [patient, _note_document(pid, text)]
    path = tmp_path / "notes.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0
    with store.begin() as conn:
        conn.execute(
            insert(schema.concept_synonym).values(
                concept_id=4329847, concept_synonym_name="Heart attack", language_concept_id=0
            )
        )
        p4_note = conn.execute(
            select(schema.note.c.note_id).where(schema.note.c.note_text.contains("NLP"))
        ).scalar_one()
        conn.execute(
            insert(schema.note_nlp).values(
                note_nlp_id=1,
                note_id=p4_note,
                lexical_variant="coded",
                nlp_date=date(2021, 3, 2),
                note_nlp_concept_id=4329847,
            )
        )
    mentions = {"table": "note", "concept_ids": [4329847]}
    assert count_cohort(store, CohortDefinition(name="mi notes", include=[mentions])) == 3
    late = mentions | {"start": "2022-01-01"}
    assert count_cohort(store, CohortDefinition(name="later", include=[late])) == 0
    assert count_cohort(store, CohortDefinition(name="no mi", exclude=[mentions])) == 1


def test_a_lone_suppressed_bin_takes_the_next_smallest_with_it():
    assert suppress_bins({"a": 3, "b": 12, "c": 40, "d": 0}, 10) == {
        "a": None,
        "b": None,
        "c": 40,
        "d": 0,
    }
    # showing c (40) of a total of 47 would give away that a and b hold 7 between them
    assert suppress_bins({"a": 3, "b": 4, "c": 40}, 10) == dict.fromkeys("abc")
    assert suppress_bins({"a": 3, "b": 8, "c": 40, "d": 50}, 10) == {
        "a": None,
        "b": None,
        "c": 40,
        "d": 50,
    }
    assert suppress_bins({"a": 30, "b": 40}, 10) == {"a": 30, "b": 40}


def test_rounding_goes_to_the_nearest_multiple_never_below_the_threshold():
    assert [rounded(n, 5, 10) for n in (None, 0, 10, 12, 13, 19)] == [None, 0, 10, 10, 15, 20]
    assert rounded(12, 5, 12) == 15, "10 would be below the threshold the hub checks"
    assert rounded(11, 1, 10) == 11


def test_histograms_bin_the_cohort_by_age_decade_and_sex(store, exported):
    from datetime import UTC, datetime

    _, patients, folder = exported("fhir-bundle", n=60)
    ingest_path(store, "fhir", folder)
    definition = CohortDefinition(name="all", histograms=["age", "sex"])
    bins = cohort_histograms(store, definition)
    assert sum(bins["age"].values()) == sum(bins["sex"].values()) == len(patients)
    year = datetime.now(UTC).year
    expected: dict[str, int] = {}
    for p in patients:
        low = (year - p.birth_date.year) // 10 * 10
        expected[f"{low}-{low + 9}"] = expected.get(f"{low}-{low + 9}", 0) + 1
    assert bins["age"] == expected
    assert bins["sex"] == {
        s: n for s in ("female", "male") if (n := sum(p.sex == s for p in patients))
    }
