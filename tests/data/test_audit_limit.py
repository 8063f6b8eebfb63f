"""A project's differencing audit is bounded by the site's `max_audit_cells`: past it every
path that keeps sets (a query's counts, a task's split sizes, an analysis) releases nothing
new for that project, and says so, while another project is answered."""

from types import SimpleNamespace

import pytest

from flip.config import SitePolicy
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.sizes import release_sizes
from flip.data.features.store_analysis import Declined
from flip.data.ledger import Ledger
from flip.site.analyses import Analyses


def _persons(start: int, n: int) -> frozenset[int]:
    return frozenset(range(start, start + n))


def _keep(ledger: Ledger, project: str, sets: list[frozenset[int]]) -> None:
    ReleaseGuard(ledger.engine, project, "before", 10, None).remember(sets, counted=False)


def test_the_limit_counts_kept_sets_and_this_one_over_the_persons_in_any(tmp_path):
    with Ledger(tmp_path / "l.db") as ledger:
        _keep(ledger, "7", [_persons(0, 50), _persons(50, 50)])  # 2 sets over 100 persons
        assert ReleaseGuard(ledger.engine, "7", "q", 10, None, 300).audit_problem() is None
        problem = ReleaseGuard(ledger.engine, "7", "q", 10, None, 299).audit_problem()
        assert problem is not None and "2 kept sets" in problem and "100 persons" in problem
        assert "limit of 299 cells" in problem and "policy.max_audit_cells" in problem
        wider = ReleaseGuard(ledger.engine, "7", "q", 10, None, 300)
        assert wider.audit_problem(persons=101) is not None, "the site's persons, when more"
        assert ReleaseGuard(ledger.engine, "7", "q", 10, None, None).audit_problem(10**9) is None
        assert ReleaseGuard(ledger.engine, "8", "q", 10, None, 100).audit_problem() is None


def test_a_tasks_sizes_not_released_before_are_withheld_past_the_limit(tmp_path):
    splits = {"n_train": _persons(0, 80), "n_test": _persons(80, 20)}
    with Ledger(tmp_path / "l.db") as ledger:
        _keep(ledger, "7", [_persons(0, 50), _persons(80, 20)])  # 2 sets over 70 persons
        sizes = release_sizes(ledger.engine, "7", "t" * 64, splits, 10, max_cells=209)
        assert sizes == {"n_train": None, "n_test": 20}, "the test set's count was given"
        other = release_sizes(ledger.engine, "8", "t" * 64, splits, 10, max_cells=209)
        assert other == {"n_train": 80, "n_test": 20}


def test_an_analysis_is_declined_past_the_limit(tmp_path):
    site = SimpleNamespace(policy=SitePolicy(max_audit_cells=299), ledger=tmp_path / "l.db")
    with Ledger(site.ledger) as ledger:
        _keep(ledger, "7", [_persons(0, 50), _persons(50, 50)])
    with pytest.raises(Declined, match="max_audit_cells"):
        Analyses(site, hub=None)._guard({"project_id": 7, "hash": "a" * 64}, [_persons(0, 60)])
    Analyses(site, hub=None)._guard({"project_id": 8, "hash": "a" * 64}, [_persons(0, 60)])
