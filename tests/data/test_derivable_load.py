"""The differencing audit's verdicts do not depend on how loaded the site's machine is: its
union search is bounded by work (HiGHS branch-and-bound nodes), and only a wall-clock
safety net far above any search's cost reads the clock. The machine is slowed here by a
clock that jumps at every HiGHS call, as a loaded machine's would."""

from functools import cache

import numpy as np
from scipy.optimize import OptimizeResult

from flip.data.cohort import unions
from flip.data.cohort.derivable import Released


@cache
def _sequence() -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Random projects' kept sets and one more count each (persons 0..13)."""
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(200):
        persons = int(rng.integers(8, 14))
        kept = [np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8)) for _ in range(4)]
        candidate = np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8))
        cases.append(([k for k in kept if k.size], candidate))
    return [(kept, c) for kept, c in cases if c.size]


def _answers() -> list[tuple[bool, str | None]]:
    """Whether each count of the sequence is withheld (threshold 3), and why if undecided."""
    answers = []
    for kept, candidate in _sequence():
        audit = Released(kept)
        answers.append((audit.reveals(candidate, 3), audit.undecided))
    return answers


@cache
def _quiet() -> list[tuple[bool, str | None]]:
    return _answers()


class _SlowMachine:
    """HiGHS on a machine so loaded that every call takes `seconds` of wall clock: the clock
    jumps by that much, and a call given less time than that stops at its time limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now, self.calls = seconds, 0.0, 0
        self._milp = unions.milp

    def clock(self) -> float:
        return self.now

    def milp(self, *args, options, **kwargs):
        self.calls += 1
        self.now += self.seconds
        if options.get("time_limit", np.inf) < self.seconds:
            return OptimizeResult(x=None, status=1, message="Time limit reached")
        return self._milp(*args, options=options, **kwargs)


def _slowed(monkeypatch, seconds: float) -> _SlowMachine:
    slow = _SlowMachine(seconds)
    monkeypatch.setattr(unions, "milp", slow.milp)
    monkeypatch.setattr(unions, "_clock", slow.clock, raising=False)
    return slow


def test_a_loaded_machine_releases_and_withholds_what_a_quiet_one_does(monkeypatch):
    quiet = _quiet()
    slow = _slowed(monkeypatch, 5.0)
    assert _answers() == quiet
    assert slow.calls > 20, "the union search ran"
    assert sum(not revealed for revealed, _ in quiet) > 20, "counts were released"
    assert all(why is None for _, why in quiet), "every search was decided"


def test_a_search_past_the_safety_net_is_withheld_naming_the_limit(monkeypatch):
    quiet = _quiet()
    _slowed(monkeypatch, unions._SAFETY_SECONDS * 2)
    slowed = _answers()
    changed = [i for i, (q, s) in enumerate(zip(quiet, slowed, strict=True)) if q != s]
    assert changed, "some searches needed HiGHS"
    assert all(slowed[i] == (True, unions.LIMITS) for i in changed), "those counts are withheld"
    assert "s in all" in unions.LIMITS


def test_a_search_past_its_node_limit_is_withheld_on_any_machine(monkeypatch):
    quiet = _quiet()
    # no node at all: HiGHS (scipy 1.17) decides these small searches at the root node, so a
    # limit of one node changes nothing; none stops every search that reaches branch and bound
    monkeypatch.setattr(unions, "_MOST_NODES", 0)
    limited = _answers()
    assert limited == _answers(), "the same work limit gives the same answers"
    changed = [i for i, (q, s) in enumerate(zip(quiet, limited, strict=True)) if q != s]
    assert changed, "a search reached HiGHS's branch and bound"
    assert all(limited[i] == (True, unions.LIMITS) for i in changed)
