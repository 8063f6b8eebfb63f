"""FedAvg, FedProx and personalised federation (FedBN, Ditto) on non-IID sites.

One pool of synthetic patients (the project's flat MACE table) is cut into sites by
Dirichlet draws: label skew, quantity skew and feature skew (case mix by age, and a
measuring scale per site on the laboratory columns), beside an IID cut for reference.
Each arm trains in Flower's simulation runtime on the same sites and splits; the
figure is each arm's mean per-site test AUROC as a ratio to FedAvg's on the same
sites (personalised arms are scored with each site's own model), so a user sees when
each helps: > 1 helps, < 1 hurts.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from flip.bench.ingest import Figure
from flip.fl.experiment import ExperimentOptions, run_experiment
from flip.synth.flat import write_table
from flip.synth.partition import SKEWS, calibrations, partition
from flip.synth.world import SiteProfile

#: The laboratory columns a site's own measuring scale distorts under feature skew.
CALIBRATED = ("sbp", "chol", "hdl", "creatinine")
#: arm -> the options that make it, over FedAvg's (which also trains local and pooled).
ARMS = {
    "FedProx": {"strategy": "fedprox"},
    "FedBN": {"personal": "fedbn"},
    "Ditto": {"personal": "ditto"},
}


def _pool(work: Path, patients: int, seed: int) -> tuple[list[str], list[list[str]]]:
    profile = SiteProfile("pool", patients, "csv", age_mean=58.0, smoker_rate=0.2)
    with write_table(profile, work / "pool.csv", seed).open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def _acceptable(parts: list[np.ndarray], y: np.ndarray, fewest: int) -> bool:
    """Each site has at least `fewest` rows of each class (enough to split and score)."""
    return all(min((y[p] == 1).sum(), (y[p] == 0).sum()) >= fewest for p in parts)


def write_skewed_sites(
    work: Path,
    skew: str,
    *,
    sites: int = 4,
    alpha: float = 0.5,
    patients: int = 3000,
    seed: int = 0,
) -> tuple[dict[str, Path], str]:
    """Site CSVs cut from one pool under `skew`; also a note of how the sites differ."""
    header, rows = _pool(work, patients, seed)
    y = np.array([r[header.index("num")] != "0" for r in rows], dtype=int)
    age = np.array([float(r[header.index("age")]) for r in rows])
    rng = np.random.default_rng(seed)
    for _ in range(200):
        parts = partition(skew, y, age, sites, alpha, rng)
        if _acceptable(parts, y, fewest=8):
            break
    else:
        raise RuntimeError(f"no {skew} partition with 8 rows of each class per site: raise alpha")
    scales = calibrations(sites, rng) if skew == "feature" else np.ones(sites)
    paths = {}
    for index, (part, scale) in enumerate(zip(parts, scales, strict=True)):
        name = f"{skew}-{index + 1}"
        paths[name] = work / skew / f"{name}.csv"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        with paths[name].open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(header)
            for i in part:
                out.writerow(_calibrated(header, rows[i], scale))
    rates = [float(y[p].mean()) for p in parts]
    sizes = [len(p) for p in parts]
    ages = [float(age[p].mean()) for p in parts]
    note = (
        f"rows {min(sizes)}-{max(sizes)}, outcome {min(rates):.0%}-{max(rates):.0%}, "
        f"mean age {min(ages):.0f}-{max(ages):.0f}"
        + (f", lab scale x{scales.min():.2f}-{scales.max():.2f}" if skew == "feature" else "")
    )
    return paths, note


def _calibrated(header: list[str], row: list[str], scale: float) -> list[str]:
    if scale == 1:
        return row
    out = list(row)
    for column in CALIBRATED:
        at = header.index(column)
        if out[at] not in ("", "?"):
            out[at] = f"{float(out[at]) * scale:.2f}"
    return out


def _site_mean(result: dict, arm: str) -> float:
    values = [m["auroc"] for m in result[arm]["per_site"].values() if m["auroc"] is not None]
    return float(np.mean(values)) if values else float("nan")


def run(
    work: Path,
    rounds: int = 10,
    sites: int = 4,
    alpha: float = 0.5,
    skews: tuple[str, ...] = SKEWS,
    seed: int = 0,
) -> list[Figure]:
    """Per skew: FedAvg's mean site AUROC, and each other arm's as a ratio to it."""
    figures = []
    for skew in skews:
        paths, note = write_skewed_sites(work, skew, sites=sites, alpha=alpha, seed=seed)
        base = ExperimentOptions(
            sites=paths,
            target="num",
            positive="num>0",
            rounds=rounds,
            local_epochs=2,
            seed=seed,
            compare=True,
        )
        fedavg = run_experiment(base).result
        reference = _site_mean(fedavg, "federated")
        figures.append(Figure(f"{skew}: FedAvg site AUROC", reference, "AUROC", note))
        means = {"local": _site_mean(fedavg, "local"), "pooled": _site_mean(fedavg, "pooled")}
        for arm, change in ARMS.items():
            options = dataclasses.replace(base, compare=False, **change)
            result = run_experiment(options).result
            means[arm] = _site_mean(result, change.get("personal", "federated"))
        for arm in ("FedProx", "FedBN", "Ditto", "local", "pooled"):
            figures.append(
                Figure(f"{skew}: {arm} / FedAvg", means[arm] / reference, "x", "mean site AUROC")
            )
    return figures
