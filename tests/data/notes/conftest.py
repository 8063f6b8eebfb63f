"""A seeded dermatology world's labelled letters, drawn once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from flip.synth.dermatology.cohort import draw_site
from flip.synth.dermatology.sites import default_sites
from flip.synth.dermatology.world import _letters


@pytest.fixture(scope="session")
def labelled_letters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The `letters_phi.jsonl` of every site of the small world, seed 7."""
    out = tmp_path_factory.mktemp("letters")
    paths = []
    for spec in default_sites(4, "small"):
        truth = out / spec.name
        truth.mkdir()
        _letters(spec, draw_site(spec, 7), 7, truth)
        paths.append(truth / "letters_phi.jsonl")
    return paths
