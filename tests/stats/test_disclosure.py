"""What a site releases holds no count from 1 to min_cell - 1, and no row."""

import json

import numpy as np

from flip.stats import describe, survival
from flip.stats.sketch import bin_value


def _counts(partial: dict) -> list[int]:
    """Every person count a partial releases."""
    out = [v for v in partial.get("counts", {}).values() if isinstance(v, int)]
    out += [run[2] for run in partial.get("sketch", {}).get("runs", [])]
    out += [c for b in partial.get("bins", []) for c in b[1:]]
    if isinstance(partial.get("n"), int):
        out.append(partial["n"])
    return out


def test_released_partials_hold_no_small_count(rng):
    for n in (15, 60, 400, 5_000):
        values = rng.gamma(0.5, 20, n)
        levels = list(rng.choice(["a", "b", "c", "d", "e"], n, p=[0.6, 0.3, 0.05, 0.04, 0.01]))
        time, event = rng.exponential(10, n).round(1), (rng.random(n) < 0.3).astype(int)
        partials = [
            describe.numeric_partial(values, 10),
            describe.categorical_partial(levels, 10),
            survival.km_partial(time, event, 0.1, 10),
        ]
        for partial in partials:
            assert all(c == 0 or c >= 10 for c in _counts(partial)), (n, partial)
            assert len(json.dumps(partial)) < 40 * 1024


def test_a_sketch_releases_no_value_of_a_lone_extreme_row(rng):
    values = np.append(rng.normal(100, 5, 1_000), 1e6)
    sketch = describe.numeric_partial(values, 10)["sketch"]
    runs = sketch["runs"]
    assert runs[-1][2] >= 10
    assert bin_value(runs[-1][1], sketch["alpha"]) < 200
    assert sum(run[2] for run in runs) == len(values)


def test_a_sketch_near_min_cell_releases_neither_extreme(rng):
    # With 10 to 18 values and min_cell 10, the 10th smallest and 10th largest cross: the
    # edges had become the bins of the minimum and the maximum.
    for n in range(10, 19):
        values = np.sort(rng.normal(50, 10, n))
        sketch = describe.numeric_partial(values, 10)["sketch"]
        edges = [bin_value(k, sketch["alpha"]) for run in sketch["runs"] for k in run[:2]]
        assert all(abs(e - v) > 1e-6 * abs(v) for e in edges for v in values[[0, -1]]), n
        assert min(edges) > values[0] and max(edges) < values[-1], n
