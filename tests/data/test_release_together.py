"""What one answer releases is audited together: a histogram's bins can each be harmless
beside the counts released before and still, all shown, give a small group away."""

from datetime import UTC, datetime

from sqlalchemy import create_engine, insert

from flip.data.cdm import schema
from flip.data.cdm.rows import GENDERS
from flip.data.cdm.store import open_store
from flip.data.cohort import CohortDefinition
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.release import release

#: Counts released to the project before (person ids), and each person's age: the three age
#: bins are each harmless beside these, the three together are not (threshold 3).
EARLIER = [
    [1, 2, 3, 5, 6, 8, 10, 14],
    [3, 5, 6, 8, 9, 11, 12],
    [1, 3, 4, 5, 6, 7, 8, 12, 14],
]
AGES = {35: [1, 2, 3, 4, 5, 8, 12, 13], 55: [6, 7, 14], 75: [9, 10, 11]}


def _store(location: str, ages: dict[int, list[int]]):
    store = open_store(location)
    store.create()
    year = datetime.now(UTC).year
    persons = [
        {
            "person_id": pid,
            "gender_concept_id": GENDERS["female"],
            "year_of_birth": year - age,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "person_source_value": f"MRN{pid:04d}",
        }
        for age, pids in ages.items()
        for pid in pids
    ]
    with store.begin() as conn:
        conn.execute(insert(schema.person), persons)
    return store


def test_a_histograms_bins_are_audited_together_not_only_one_by_one(tmp_path):
    store = _store(str(tmp_path / "store.duckdb"), AGES)
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ReleaseGuard(engine, "p", "earlier", 3, None).remember([frozenset(s) for s in EARLIER])
    everyone = CohortDefinition.model_validate({"name": "everyone", "histograms": ["age"]})
    try:
        answer = release(store, everyone, 3, ReleaseGuard(engine, "p", "q", 3, None))
    finally:
        store.close()
    assert answer.count == 14
    assert set(answer.histograms["age"].values()) == {None}, answer.histograms
