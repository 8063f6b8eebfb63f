"""Small-cell suppression: no released table lets a hidden cell be recovered."""

from itertools import product

from flip.stats import suppression
from flip.stats.suppression import suppress_counts


def _recoverable(released: dict, total: int, min_cell: int) -> bool:
    hidden = [k for k, v in released.items() if isinstance(v, str)]
    rest = total - sum(v for v in released.values() if isinstance(v, int))
    return len(hidden) == 1 or (bool(hidden) and rest < min_cell)


def test_small_cells_are_hidden_and_large_ones_released():
    released = suppress_counts({"a": 3, "b": 50, "c": 40, "d": 0}, 10)
    assert released["a"] == "<10"
    assert released["d"] == 0
    assert sum(isinstance(v, str) for v in released.values()) >= 2


def test_secondary_suppression_hides_the_next_smallest_cell():
    assert suppress_counts({"a": 3, "b": 50, "c": 40}, 10) == {"a": "<10", "b": 50, "c": "<10"}


def test_no_hidden_cell_can_be_recovered_from_the_total():
    for cells in product([0, 1, 4, 9, 10, 12, 30], repeat=3):
        counts = dict(zip("abc", cells, strict=True))
        released = suppress_counts(counts, 10)
        if sum(cells) >= 10:
            assert not _recoverable(released, sum(cells), 10), (counts, released)
        for level, value in released.items():
            assert value == "<10" or value == counts[level]
            assert not 0 < (value if isinstance(value, int) else 0) < 10


def test_a_total_beside_a_hidden_count_is_only_a_lower_bound():
    """Cox released events 53 beside site a "<10" and site b 50: a had 3."""
    assert suppression.total([50, "<10"]) == ">=50"
    assert suppression.total([50, 12]) == 62
