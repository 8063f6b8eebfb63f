"""The differencing audit is kept between queries: a later query adds only the sets released
since to a copy, and gives the same answers as an audit built afresh from the ledger."""

import numpy as np
from sqlalchemy import create_engine, delete

from flip.data.cohort import guard as guard_module
from flip.data.cohort.guard import ReleaseGuard, released_set

THRESHOLD = 5


def _sets(rng: np.random.Generator, n: int) -> list[frozenset[int]]:
    return [
        frozenset(np.flatnonzero(rng.random(200) < rng.uniform(0.2, 0.7)).tolist())
        for _ in range(n)
    ]


def test_a_later_query_extends_the_kept_audit_and_answers_as_a_fresh_one(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    early, late = _sets(rng, 6), _sets(rng, 4)
    ReleaseGuard(engine, "p", "q1", THRESHOLD, None).remember(early)
    first = ReleaseGuard(engine, "p", "q2", THRESHOLD, None)
    probes = _sets(rng, 20) + [s | {1000 + i} for i, s in enumerate(early + late)]
    assert first.isolates(probes[0]) in (True, False)
    first.remember(late)

    built = []
    original = guard_module.Released
    monkeypatch.setattr(
        guard_module, "Released", lambda sets=(): built.append(len(sets)) or original(sets)
    )
    later = ReleaseGuard(engine, "p", "q3", THRESHOLD, None)
    kept_answers = [later.isolates(p) for p in probes]
    assert built == [], "the kept audit was extended, not rebuilt"

    fresh = original(later._load())
    assert kept_answers == [fresh.reveals(np.array(sorted(p)), THRESHOLD) for p in probes]
    assert any(kept_answers) and not all(kept_answers), "both answers were exercised"


def test_a_ledger_that_lost_sets_is_audited_afresh(tmp_path):
    rng = np.random.default_rng(4)
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    sets = _sets(rng, 5)
    ReleaseGuard(engine, "p", "q1", THRESHOLD, None).remember(sets)
    ReleaseGuard(engine, "p", "q2", THRESHOLD, None).isolates(sets[0])
    with engine.begin() as conn:
        conn.execute(delete(released_set))
    ReleaseGuard(engine, "p", "q3", THRESHOLD, None).remember(sets[:1])
    later = ReleaseGuard(engine, "p", "q4", THRESHOLD, None)
    later.isolates(sets[1])
    assert later._audit().count == 1, "only what the ledger keeps now is known"
