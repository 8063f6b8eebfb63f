"""Attrition steps are released through the differencing guard: small counts hidden, a step
a few persons away from a released one withheld."""

import pytest

from flip.data.cohort.circe.attrition import release_steps


def _nested(counts: list[int]) -> list[frozenset[int]]:
    return [frozenset(range(c)) for c in counts]


def test_small_counts_are_hidden_and_small_drops_withheld():
    assert release_steps(_nested([120, 115, 60, 4, 0]), 10) == [120, "withheld", 60, "<10", 0]
    assert release_steps(_nested([50, 50, 38]), 10) == [50, 50, 38]


def test_a_withheld_step_is_not_a_baseline_for_the_next():
    assert release_steps(_nested([100, 95, 91, 80]), 10) == [100, "withheld", "withheld", 80]


def test_a_step_that_adds_persons_is_refused():
    with pytest.raises(ValueError, match="only persons of the step before"):
        release_steps([frozenset({1, 2}), frozenset({3})], 10)
