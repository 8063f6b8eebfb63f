"""A project given many counts over many small atoms keeps being answered: past the union
search's eigenproblem side, a count whose new direction the large atoms cannot cancel leaves
nothing new on the small atoms and is checked without it; any other is withheld as before.
Checked against the audit's definition (brute force) with the side forced to nothing."""

import numpy as np
import pytest

from flip.data.cohort import unions
from flip.data.cohort.derivable import Released
from tests.data.test_derivable import _reference


def _cases(seed: int, threshold: int):
    rng = np.random.default_rng(seed)
    for _ in range(250):
        persons = int(rng.integers(8, 16))
        kept = [
            np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8))
            for _ in range(int(rng.integers(1, 6)))
        ]
        candidate = np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8))
        if candidate.size:
            yield [k for k in kept if k.size], candidate, persons


@pytest.mark.parametrize("threshold", [3, 5])
def test_past_the_side_a_count_is_released_only_when_it_reveals_nothing(monkeypatch, threshold):
    monkeypatch.setattr(unions, "_MOST_SIDE", 0)
    news, cleared = unions._news, []

    def spied(large, unit):
        cleared.append(not news(large, unit))
        return not cleared[-1]

    monkeypatch.setattr(unions, "_news", spied)
    withheld_unchecked = 0
    for kept, candidate, persons in _cases(19, threshold):
        audit = Released(kept)
        if not audit.reveals(candidate, threshold):
            assert not _reference(kept, candidate, persons, threshold), (kept, candidate)
        withheld_unchecked += audit.undecided is not None
    assert sum(cleared) > 5, "counts are released past the side, the large atoms clearing them"
    assert withheld_unchecked > 10, "and a count that may reveal is withheld, naming the limit"


def test_past_the_side_the_known_attack_is_still_withheld(monkeypatch):
    """P, A, A∩B released, and a third count splitting the persons failing both rules: B
    gives P - A - B + A∩B (two and three persons) away however the search is limited."""
    everyone, a, b = set(range(100)), set(range(60)), set(range(50, 95))
    cut = set(range(30)) | {95, 96}
    kept = [np.array(sorted(s)) for s in (cut, everyone, a, a & b)]
    for side in (unions._MOST_SIDE, 0):
        monkeypatch.setattr(unions, "_MOST_SIDE", side)
        assert Released(kept).reveals(np.array(sorted(b)), 10)


def test_a_project_past_the_side_keeps_answering_range_counts_as_the_full_search(monkeypatch):
    """60 age-like ranges over 2,500 persons (some 40 small atoms) against 15 more: with the
    side at 20, each is answered as the full search answers it, or withheld."""
    rng = np.random.default_rng(5)
    ranges = [np.arange(*sorted(rng.integers(0, 2500, 2))) for _ in range(75)]
    kept, asked = [r for r in ranges[:60] if r.size], [r for r in ranges[60:] if r.size]
    full = Released(kept)
    sizes = np.bincount(full.atom)
    assert min(full.rank, np.count_nonzero(sizes < 10)) > 20
    expected = [full.reveals(r, 10) for r in asked]
    monkeypatch.setattr(unions, "_MOST_SIDE", 20)
    past = Released(kept)
    answers = [past.reveals(r, 10) for r in asked]
    assert all(a or not e for a, e in zip(answers, expected, strict=True)), "never more released"
    assert answers.count(False) >= expected.count(False) // 2, "most releases still made"
