"""The demo's outputs: results.json, report.md and a PNG plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import orjson

ARMS = ("local", "federated", "pooled")
LABELS = {"local": "local-only", "federated": "federated", "pooled": "pooled (centralised)"}


def _clean(value: float) -> float | None:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else None


def _size(metrics: dict[str, Any]) -> int | None:
    """A site's test size as its metrics give it; None where the site withheld it."""
    size = metrics.get("n_test", metrics.get("num-examples"))
    return None if size is None else int(size)


def size_label(size: int | None) -> str:
    """A released test size as shown to a reader: the number, or "withheld" where the site
    withheld it (it would have singled out persons against counts released before)."""
    return "withheld" if size is None else str(size)


def results_document(
    arms: dict[str, dict[str, dict[str, float]]], sites: list[str]
) -> dict[str, Any]:
    """{arm: {site: {"auroc": float, "n_test": int or None}}} for every arm, sites in `sites`
    order."""
    return {
        arm: {
            site: {
                "auroc": _clean(float(arms[arm][site]["auroc"])),
                "n_test": _size(arms[arm][site]),
            }
            for site in sites
            if site in arms[arm]
        }
        for arm in ARMS
    }


def plot(results: dict[str, Any], rounds: list[dict[str, float]], path: Path) -> None:
    """Per-site AUROC of each arm, and the federated AUROC round by round."""
    sites = list(results["federated"])
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.26
    for i, arm in enumerate(ARMS):
        values = [results[arm].get(s, {}).get("auroc") or 0.0 for s in sites]
        xs = [j + (i - 1) * width for j in range(len(sites))]
        bars.bar(xs, values, width, label=LABELS[arm])
    sizes = [size_label(results["federated"][s]["n_test"]) for s in sites]
    bars.set_xticks(
        range(len(sites)), [f"{s}\n(n_test={n})" for s, n in zip(sites, sizes, strict=True)]
    )
    bars.set_ylim(0.5, 1.0)
    bars.set_ylabel("AUROC on the site's own test set")
    bars.set_title("5-year MACE risk: discrimination by site")
    bars.legend(loc="lower right")
    curve.plot(
        range(1, len(rounds) + 1), [r.get("auroc", float("nan")) for r in rounds], marker="o"
    )
    curve.set_ylim(0.5, 1.0)
    curve.set_xlabel("round")
    curve.set_ylabel("federated AUROC (weighted over sites)")
    curve.set_title("Federated training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(
    results: dict[str, Any],
    queries: list[dict[str, Any]],
    rounds: list[dict[str, float]],
    meta: dict[str, Any],
) -> str:
    """A report a clinician-researcher can read."""
    lines = [
        "# FLIP demo report",
        "",
        f"Task: **{meta['task_name']}** (`tabular-logreg`), task hash `{meta['task_hash']}`.",
        f"{len(results['federated'])} synthetic hospitals, {meta['rounds']} federated rounds "
        f"of FedAvg (Flower simulation runtime), seed {meta['seed']}.",
        "",
        "## Cohort counts released by the sites",
        "",
        f"Each site suppresses counts between 1 and its threshold ({meta['threshold']}).",
        "",
        "| query | " + " | ".join(meta["sites"]) + " |",
        "|---|" + "---|" * len(meta["sites"]),
    ]
    for q in queries:
        cells = []
        for site in meta["sites"]:
            r = q["results"].get(site)
            cells.append(
                "pending"
                if r is None
                else f"<{r['threshold']}"
                if r["suppressed"]
                else str(r["count"])
            )
        lines.append(f"| {q['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Discrimination (AUROC) on each site's held-out test set",
        "",
        "| site | n_test | local-only | federated | pooled (centralised) |",
        "|---|---|---|---|---|",
    ]
    for site, fed in results["federated"].items():
        cells = [_fmt(results[arm].get(site, {}).get("auroc")) for arm in ARMS]
        lines.append(f"| {site} | {size_label(fed['n_test'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "*Local-only*: each site trains alone. *Federated*: the sites train one model together",
        "and only model updates and metrics leave them. *Pooled*: all records in one place, which",
        "a real federation never does; it is the ceiling federation aims at.",
        "",
        "## Federated rounds",
        "",
        "| round | AUROC | accuracy | loss |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, start=1):
        lines.append(
            f"| {i} | {_fmt(r.get('auroc'))} | {_fmt(r.get('accuracy'))} | {_fmt(r.get('loss'))} |"
        )
    lines += ["", "![AUROC by site and by round](auroc.png)", ""]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def write_outputs(
    out: Path,
    arms: dict[str, dict[str, dict[str, float]]],
    queries: list[dict[str, Any]],
    rounds: list[dict[str, float]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Write results.json, report.md and auroc.png under `out`; return the results document."""
    results = results_document(arms, meta["sites"])
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    plot(results, rounds, out / "auroc.png")
    (out / "report.md").write_text(markdown(results, queries, rounds, meta), encoding="utf-8")
    return results
