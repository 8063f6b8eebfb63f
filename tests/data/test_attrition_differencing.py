"""Differencing across queries by inclusion-exclusion: counts that no two of which differ by
a few persons, but whose signed sum counts a few (the persons failing two rules)."""

from sqlalchemy import create_engine

from flip.data.cohort.circe.attrition import release_steps
from flip.data.cohort.guard import ReleaseGuard

PRIMARY = frozenset(range(100))
A = frozenset(range(0, 60))  # pass rule A: 60
B = frozenset(range(50, 95))  # pass rule B: 45; both: 10; neither: 95..99 (5 persons)


def _neither(p: int | str, pa: int | str, pb: int | str, pab: int | str) -> int | None:
    """P - A - B + A∩B when all four were released, else None."""
    known = [p, pa, pb, pab]
    if all(isinstance(v, int) for v in known):
        return p - pa - pb + pab
    return None


def test_two_rule_orders_do_not_reveal_the_few_who_fail_both(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    q1 = release_steps([PRIMARY, A, A & B], 10, ReleaseGuard(engine, "p", "q1", 10, None))
    q2 = release_steps([PRIMARY, B, A & B], 10, ReleaseGuard(engine, "p", "q2", 10, None))
    assert q1 == [100, 60, 10], "nothing in one query alone counts a few"
    assert q2[:1] == [100]
    neither = _neither(q1[0], q1[1], q2[1], q1[2])
    assert neither is None, f"{q1} and {q2} give {neither} persons failing both rules"


def test_three_one_rule_queries_do_not_reveal_the_few_who_fail_both(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    qa = release_steps([PRIMARY, A], 10, ReleaseGuard(engine, "p", "qa", 10, None))
    qb = release_steps([PRIMARY, B], 10, ReleaseGuard(engine, "p", "qb", 10, None))
    qab = release_steps([PRIMARY, A & B], 10, ReleaseGuard(engine, "p", "qab", 10, None))
    assert qa == [100, 60] and qb == [100, 45], "two marginals alone count no small group"
    assert qab == [100, "withheld"], "A∩B beside P, A and B counts the 5 failing both"


def test_the_guard_keeps_the_sets_it_released_across_guards(tmp_path):
    """The audit reads what earlier queries released from the ledger, not only this query's."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ReleaseGuard(engine, "p", "q1", 10, None).remember([PRIMARY, A, B])
    guard = ReleaseGuard(engine, "p", "q2", 10, None)
    assert guard.isolates(A & B)
    assert not ReleaseGuard(engine, "other project", "q", 10, None).isolates(A & B)


def test_the_few_who_fail_both_rules_stay_hidden_when_a_third_count_cuts_them(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    cut = frozenset(range(30)) | {95, 96}  # 30 who pass A only, and 2 of the 5 who fail both
    assert release_steps([cut], 10, ReleaseGuard(engine, "p", "q0", 10, None)) == [32]
    q1 = release_steps([PRIMARY, A, A & B], 10, ReleaseGuard(engine, "p", "q1", 10, None))
    q2 = release_steps([PRIMARY, B, A & B], 10, ReleaseGuard(engine, "p", "q2", 10, None))
    neither = _neither(q1[0], q1[1], q2[1], q1[2])
    assert neither is None, f"{q1} and {q2} give {neither} persons failing both rules"
