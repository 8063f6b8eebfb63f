"""An analysis's guard keeps only the sets whose counts the analysis shows: a level of a
Table 1 column held by a few persons is suppressed, so the site must not take its count as
known (else later counts that together give it away look like nothing new)."""

from types import SimpleNamespace

import numpy as np
import pytest

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
    Analyses(site, hub=None)._guard(
        {"project_id": 7, "hash": "c" * 64}, released_sets(data, spec, 10)
    )
    with Ledger(site.ledger) as ledger:
        guard = ReleaseGuard(ledger.engine, "7", "q", 10, None)
        assert guard.released_before(frozenset(range(2, 100)))
        assert not guard.released_before(frozenset(range(100)))


def _survival(days: np.ndarray) -> TabularData:
    """A cohort with follow-up `days`, everyone with the event (every bin has censored 0)."""
    y = np.column_stack([days, np.ones(len(days))])
    return TabularData(np.arange(len(days)), np.zeros((len(days), 0)), y, [])


def test_two_survival_grids_a_few_persons_apart_are_refused_the_second(tmp_path):
    """Kaplan-Meier on bins of 30 days, then of 31: the persons followed up to day 30 and to
    day 31 differ by the 3 who ended on day 31, so the second curve would tell how many of
    them had the event. The site's guard refuses the second analysis; the first, asked
    again, is released again."""
    from flip.site.analyses import Declined

    rng = np.random.default_rng(3)
    days = np.concatenate(
        [rng.uniform(0.5, 29.5, 40), [30.5, 30.6, 30.7], rng.uniform(32, 300, 160)]
    )
    data = _survival(days.round(1))
    site = SimpleNamespace(policy=SitePolicy(min_cell_size=10), ledger=tmp_path / "l.db")
    analyses = Analyses(site, hub=None)
    monthly = SimpleNamespace(kind="survival", covariates=[], family=None, time_bin=30.0)
    by_31 = SimpleNamespace(kind="survival", covariates=[], family=None, time_bin=31.0)
    analyses._guard({"project_id": 7, "hash": "d" * 64}, released_sets(data, monthly, 10))
    analyses._guard({"project_id": 7, "hash": "d" * 64}, released_sets(data, monthly, 10))
    with pytest.raises(Declined, match="differs by 1 to 9 persons"):
        analyses._guard({"project_id": 7, "hash": "e" * 64}, released_sets(data, by_31, 10))


def test_a_survival_grid_finer_than_the_sites_policy_is_refused_naming_it():
    """On a grid of 0.001 days the last bin's end is one person's exact follow-up: the site
    refuses a time bin under its policy's min_time_bin (7 days unless it says otherwise)."""
    from flip.data.features.store_analysis import AnalysisSpec
    from flip.fl.tasks import mace_task
    from flip.site.policy import analysis_problem

    policy = SitePolicy(allowed_analysis_kinds=["survival"], allowed_tables=None)
    data = mace_task().data.model_copy(update={"outcome": "time-to-event"})
    spec = AnalysisSpec(kind="survival", data=data, time_bin=0.001)
    problem = analysis_problem(policy, 7, spec)
    assert problem is not None and "min_time_bin 7" in problem
    monthly = spec.model_copy(update={"time_bin": 30.0})
    assert analysis_problem(policy, 7, monthly) is None
    wide = policy.model_copy(update={"min_time_bin": 0.001})
    assert analysis_problem(wide, 7, spec) is None
