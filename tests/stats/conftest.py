"""Shared generated data: pooled rows split unevenly across three sites."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261203)


def split(n: int, rng: np.random.Generator, shares=(0.5, 0.3, 0.2)) -> list[np.ndarray]:
    """Row indices of each site, shuffled."""
    order = rng.permutation(n)
    cuts = np.cumsum([round(s * n) for s in shares])[:-1]
    return np.split(order, cuts)
