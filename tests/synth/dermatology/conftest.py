"""A tiny dermatology world, written once for the tests that read it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flip.synth.dermatology import write_world
from flip.synth.dermatology.sites import default_sites

#: People per site in the tiny world: enough for every export shape, fast to write.
TINY = (9, 7, 6, 5)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(folder, what was written) of a four-site world with a handful of people each."""
    out = tmp_path_factory.mktemp("dermatology")
    sites = [replace(s, n_persons=n) for s, n in zip(default_sites(4), TINY, strict=True)]
    return out, write_world(out, seed=7, sites=sites)
