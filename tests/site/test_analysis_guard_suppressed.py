"""An analysis's guard keeps only the sets whose counts the analysis shows: a level of a
Table 1 column held by a few persons is suppressed, so the site must not take its count as
known (else later counts that together give it away look like nothing new)."""

from types import SimpleNamespace

import numpy as np

from flip.config import SitePolicy
from flip.data.cohort.guard import ReleaseGuard
from flip.data.features.store_analysis import released_sets
from flip.data.features.tabular import TabularData
from flip.data.ledger import Ledger
from flip.site.analyses import Analyses


def _persons(start: int, n: int) -> frozenset[int]:
    return frozenset(range(start, start + n))


def test_a_suppressed_small_level_of_an_analysis_cannot_be_differenced_out_later(tmp_path):
    site = SimpleNamespace(policy=SitePolicy(min_cell_size=10), ledger=tmp_path / "l.db")
    small = _persons(1, 3)  # a 0/1 column's rare level: Table 1 shows it as "<10"
    item = {"project_id": 7, "hash": "a" * 64}
    Analyses(site, hub=None)._guard(item, [small])
    x, z = _persons(100, 50), _persons(200, 50)
    released = []
    with Ledger(site.ledger) as ledger:
        for n, members in enumerate([x | small, x | z, z]):
            guard = ReleaseGuard(ledger.engine, "7", f"q{n}", 10, None)
            if not guard.isolates(members):
                guard.remember([members])
                released.append(members)
    # |x + small| - (|x + z| - |z|) would be the 3 persons' count.
    assert len(released) < 3


def test_a_column_whose_few_missing_withhold_its_n_is_not_kept_as_released(tmp_path):
    """Table 1 withholds a column's n when only a few values are missing: the persons with a
    value differ from the cohort by those few, so their count must not be taken as known."""
    site = SimpleNamespace(policy=SitePolicy(min_cell_size=10), ledger=tmp_path / "l.db")
    cohort = _persons(1, 100)
    present = cohort - _persons(1, 2)
    Analyses(site, hub=None)._guard({"project_id": 7, "hash": "b" * 64}, [cohort, present])
    x = _persons(200, 50)
    released = []
    with Ledger(site.ledger) as ledger:
        for n, members in enumerate([x, present | x]):
            guard = ReleaseGuard(ledger.engine, "7", f"q{n}", 10, None)
            if not guard.isolates(members):
                guard.remember([members])
                released.append(members)
    # |cohort| - (|present + x| - |x|) would be the 2 persons without a value.
    assert len(released) < 2


def test_a_models_cohort_is_not_kept_when_a_few_rows_are_left_out(tmp_path):
    """A model shows n of its complete rows and hides a few left out: its cohort's count is
    not released, so the complete rows are kept, not the cohort."""
    ids = np.arange(100)
    y = np.ones(100)
    y[:2] = np.nan
    data = TabularData(ids, np.zeros((100, 0)), y, [])
    spec = SimpleNamespace(kind="regression", covariates=[], family="linear")
    site = SimpleNamespace(policy=SitePolicy(min_cell_size=10), ledger=tmp_path / "l.db")
    Analyses(site, hub=None)._guard({"project_id": 7, "hash": "c" * 64}, released_sets(data, spec))
    with Ledger(site.ledger) as ledger:
        guard = ReleaseGuard(ledger.engine, "7", "q", 10, None)
        assert guard.released_before(frozenset(range(2, 100)))
        assert not guard.released_before(frozenset(range(100)))
