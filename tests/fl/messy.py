"""Messy multi-hospital CSV files for the experiment tests."""

from __future__ import annotations

from pathlib import Path

from flip.synth import default_profiles
from flip.synth.flat import write_table


def write_sites(folder: Path, seed: int = 0) -> dict[str, Path]:
    """One flat CSV per synthetic hospital of the default 3-site world."""
    return {p.name: write_table(p, folder / f"{p.name}.csv", seed) for p in default_profiles(3)}
