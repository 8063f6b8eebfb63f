"""What one answer releases is audited together: a histogram's bins can each be harmless
beside the counts released before and still, all shown, give a small group away."""

from datetime import UTC, datetime
from itertools import combinations

import numpy as np
import pytest
from sqlalchemy import create_engine, insert

from flip.data.cdm import schema
from flip.data.cdm.rows import GENDERS
from flip.data.cdm.store import open_store
from flip.data.cohort import CohortDefinition
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.release import Refused, release

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
    bins = answer.histograms["age"]
    assert None in bins.values(), "all three bins shown give a small group away"
    shown = [AGES[int(label[:2]) + 5] for label, n in bins.items() if n is not None]
    known = [*EARLIER, [p for pids in AGES.values() for p in pids], *shown]
    assert _small_groups_derivable(known, 3) == _small_groups_derivable(EARLIER, 3)


def _small_groups_derivable(sets: list[list[int]], threshold: int) -> set[frozenset[int]]:
    """Every union of atoms of 1 to threshold-1 persons whose size follows from the counts
    of `sets` (rank test over the persons), found by brute force."""
    persons = sorted({p for s in sets for p in s})
    rows = np.array([[p in s for p in persons] for s in sets], dtype=float)
    atoms: dict[tuple, list[int]] = {}
    for column, person in enumerate(persons):
        atoms.setdefault(tuple(rows[:, column]), []).append(person)
    found = set()
    for size in range(1, threshold):
        for chosen in combinations(atoms.values(), size):
            group = frozenset(p for atom in chosen for p in atom)
            if len(group) < threshold:
                vector = np.array([[p in group for p in persons]], dtype=float)
                if np.linalg.matrix_rank(np.vstack([rows, vector])) == np.linalg.matrix_rank(rows):
                    found.add(group)
    return found


def test_a_cohort_of_all_but_a_few_of_the_sites_persons_is_refused(tmp_path):
    """The hub may know how many persons a site holds without asking (it is no secret): a
    count of all of them but a few would count those few."""
    store = _store(str(tmp_path / "store.duckdb"), {40: list(range(1, 16)), 70: [16, 17, 18]})
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    under_60 = CohortDefinition.model_validate({"name": "under 60", "age_max": 60})
    try:
        with pytest.raises(Refused, match="fewer than 10 persons"):
            release(store, under_60, 10, ReleaseGuard(engine, "p", "q", 10, None))
    finally:
        store.close()


def test_the_sites_persons_are_audited_as_known_and_as_unknown(tmp_path):
    """Taking the site's total as known must not hide what other counts give away: here the
    5 persons outside an earlier count follow from two counts without the total."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    everyone = frozenset(range(100))
    earlier = [frozenset(range(95)), frozenset(range(50))]
    ReleaseGuard(engine, "p", "earlier", 10, None).remember(earlier)
    guard = ReleaseGuard(engine, "p", "q", 10, None)
    guard.also_known(everyone)
    assert guard.isolates(frozenset(range(50)) | frozenset(range(95, 100)))
    assert not guard.isolates(frozenset(range(60)))
