"""A project cannot push the differencing audit's union search past its limits with counts
that only cut large groups: the search works on the small atoms alone, and a search it
still cannot decide withholds the count, naming the limit."""

from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine

from flip.config import SitePolicy
from flip.data.cohort import unions
from flip.data.cohort.circe.attrition import release_steps
from flip.data.cohort.guard import ReleaseGuard
from flip.data.features.store_analysis import Declined
from flip.data.ledger import Ledger
from flip.site.analyses import Analyses

PRIMARY = frozenset(range(100))
A = frozenset(range(0, 60))  # pass rule A: 60
B = frozenset(range(50, 95))  # pass rule B: 45; both: 10; neither: 95..99 (5 persons)
CUT = frozenset(range(30)) | {95, 96}  # cuts the 5 failing both into 2 and 3
#: Counts of others, each 10 more than the last: every atom they make holds 10 persons.
PADDING = [frozenset(range(1000, 1000 + 10 * i)) for i in range(1, 301)]


def _neither(p: int | str, pa: int | str, pb: int | str, pab: int | str) -> int | None:
    """P - A - B + A∩B when all four were released, else None."""
    known = [p, pa, pb, pab]
    if all(isinstance(v, int) for v in known):
        return p - pa - pb + pab
    return None


def test_padding_with_large_groups_does_not_let_inclusion_exclusion_through(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ReleaseGuard(engine, "p", "padding", 10, None).remember(PADDING)
    assert release_steps([CUT], 10, ReleaseGuard(engine, "p", "q0", 10, None)) == [32]
    q1 = release_steps([PRIMARY, A, A & B], 10, ReleaseGuard(engine, "p", "q1", 10, None))
    q2 = release_steps([PRIMARY, B, A & B], 10, ReleaseGuard(engine, "p", "q2", 10, None))
    neither = _neither(q1[0], q1[1], q2[1], q1[2])
    assert neither is None, f"{q1} and {q2} give {neither} persons failing both rules"


def test_a_count_the_search_cannot_decide_is_withheld_naming_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(unions, "_MOST_CELLS", 1)
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ReleaseGuard(engine, "p", "q0", 10, None).remember([CUT, PRIMARY, A, A & B])
    guard = ReleaseGuard(engine, "p", "q1", 10, None)
    assert not guard.isolates(PADDING[0]), "a count that cuts no small atom is checked as before"
    assert guard.isolates(B), "a count the search cannot decide is withheld"
    assert "union search could not decide" in guard.refusal()
    assert release_steps([PRIMARY, B], 10, guard) == [100, "withheld"]


def test_an_analysis_the_search_cannot_decide_is_declined_naming_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(unions, "_MOST_CELLS", 1)
    site = SimpleNamespace(policy=SitePolicy(min_cell_size=10), ledger=tmp_path / "l.db")
    with Ledger(site.ledger) as ledger:
        ReleaseGuard(ledger.engine, "7", "q0", 10, None).remember([CUT, PRIMARY, A, A & B])
    with pytest.raises(Declined, match=r"cannot be checked: .*union search could not decide"):
        Analyses(site, hub=None)._guard({"project_id": 7, "hash": "a" * 64}, [B])
