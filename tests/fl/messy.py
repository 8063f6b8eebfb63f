"""Messy multi-hospital CSV files, as real extracts come: mixed types, missing values, ids."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flip.synth import default_profiles, generate_site


def write_sites(folder: Path, seed: int = 0) -> dict[str, Path]:
    """One CSV per synthetic hospital; `num` (0-3) grades the outcome, so num>0 is MACE."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for profile in default_profiles(3):
        path = folder / f"{profile.name}.csv"
        with path.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(
                [
                    "patient_id",
                    "age",
                    "sex",
                    "smoker",
                    "diabetes",
                    "sbp",
                    "chol",
                    "hdl",
                    "bmi",
                    "creatinine",
                    "chest_pain_type",
                    "num",
                ]
            )
            for p in generate_site(profile, seed):

                def cell(key: str, fmt: str = "{:.1f}", values=p.measurements) -> str:
                    value = values.get(key)
                    return "?" if value is None or rng.random() < 0.05 else fmt.format(value)

                age = (p.index_date - p.birth_date).days / 365.25
                num = int(rng.integers(1, 4)) if p.mace else 0
                out.writerow(
                    [
                        f"{profile.name[:2]}-{p.source_id}",
                        f"{age:.0f}",
                        p.sex[0].upper(),
                        "yes" if p.smoker else ("" if rng.random() < 0.05 else "no"),
                        "TRUE" if "diabetes" in p.conditions else "FALSE",
                        cell("sbp"),
                        cell("total_chol"),
                        cell("hdl", "{:.2f}"),
                        cell("bmi"),
                        cell("creatinine"),
                        rng.choice(["typical", "atypical", "non-anginal", "asymptomatic"]),
                        num,
                    ]
                )
        paths[profile.name] = path
    return paths
