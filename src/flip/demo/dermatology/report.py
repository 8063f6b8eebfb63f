"""The dermatology demo's outputs: results.json, PNG figures and a self-contained report.html
(figures inlined as base64 PNG, no script, no link to anything outside the file)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import orjson

from flip.demo.dermatology import metrics

ARMS = ("local", "federated", "pooled")
LABELS = {"local": "local-only", "federated": "federated", "pooled": "pooled (centralised)"}
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")
FIGURES = {
    "overview": "Local-only, federated and pooled models at each site",
    "roc": "ROC of the federated response model at each site",
    "calibration": "Calibration of the federated response model at each site",
    "bland_altman": "Bland-Altman: federated biomarker against the clinician's PASI",
    "fairness": "Federated biomarker error by Fitzpatrick skin type",
    "learning": "Federated learning curves",
}


def _number(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


def results_document(
    arms: dict[str, dict[str, dict[str, dict[str, Any]]]], text_bytes: dict[str, int]
) -> dict[str, Any]:
    """results.json: biomarker MAE/ICC, response AUROC per arm and site, fairness of the
    federated biomarker by skin type, and the bytes a site sends per round for the model
    with the LoRA-tuned text encoder, against full fine-tuning."""
    biomarker = {
        arm: {
            site: {
                "mae": _number(metrics.mae(r["predicted"], r["truth"])),
                "icc": _number(metrics.icc(r["predicted"], r["truth"])),
                "n_test": len(r["truth"]),
            }
            for site, r in arms["biomarker"][arm].items()
        }
        for arm in ARMS
    }
    response = {
        arm: {
            site: {
                "auroc": _number(metrics.auroc(r["truth"], r["predicted"])),
                "n_test": len(r["truth"]),
            }
            for site, r in arms["response"][arm].items()
        }
        for arm in ARMS
    }
    fairness: dict[str, dict[str, dict[str, Any]]] = {}
    for site, r in arms["biomarker"]["federated"].items():
        fairness[site] = {}
        for number, name in enumerate(FITZPATRICK, start=1):
            rows = r["fitzpatrick"] == number
            if rows.any():
                fairness[site][name] = {
                    "mae": _number(metrics.mae(r["predicted"][rows], r["truth"][rows])),
                    "n": int(rows.sum()),
                }
    return {
        "biomarker": biomarker,
        "response": response,
        "fairness": fairness,
        "bytes_per_round": {"lora": int(text_bytes["lora"]), "full": int(text_bytes["full"])},
    }


def _bars(ax, results: dict[str, Any], task: str, key: str, title: str, ylabel: str) -> None:
    sites = list(results[task]["federated"])
    width = 0.26
    for i, arm in enumerate(ARMS):
        values = [results[task][arm][s][key] for s in sites]
        xs = [j + (i - 1) * width for j in range(len(sites))]
        ax.bar(xs, [np.nan if v is None else v for v in values], width, label=LABELS[arm])
    n = [results[task]["federated"][s]["n_test"] for s in sites]
    ax.set_xticks(range(len(sites)), [f"{s}\n(n_test={k})" for s, k in zip(sites, n, strict=True)])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def _figures(
    results: dict[str, Any], arms: dict[str, Any], curves: dict[str, list[float]]
) -> dict[str, plt.Figure]:
    figures = {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    _bars(
        left,
        results,
        "biomarker",
        "mae",
        "Biomarker: PASI from the photograph",
        "MAE (PASI points), lower is better",
    )
    _bars(
        right,
        results,
        "response",
        "auroc",
        "Response: PASI75 at week 16",
        "AUROC, higher is better",
    )
    right.set_ylim(0.0, 1.0)
    right.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    figures["overview"] = fig

    response = arms["response"]["federated"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for site, r in response.items():
        if len(set(r["truth"].tolist())) == 2:
            fpr, tpr = metrics.roc_points(r["truth"], r["predicted"])
            auc = metrics.auroc(r["truth"], r["predicted"])
            ax.plot(fpr, tpr, label=f"{site} (AUROC {auc:.2f}, n={len(r['truth'])})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, federated response model")
    ax.legend(fontsize=8)
    figures["roc"] = fig

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for site, r in response.items():
        points = metrics.calibration(r["truth"], r["predicted"])
        if points:
            xs, ys, _ = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=site)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("predicted probability of PASI75")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration (5 bins), federated response model")
    ax.legend(fontsize=8)
    figures["calibration"] = fig

    fig, ax = plt.subplots(figsize=(6, 4.5))
    diffs = []
    for site, r in arms["biomarker"]["federated"].items():
        mean = (r["predicted"] + r["truth"]) / 2
        diff = r["predicted"] - r["truth"]
        diffs.append(diff)
        ax.scatter(mean, diff, s=12, alpha=0.7, label=site)
    every = np.concatenate(diffs) if diffs else np.zeros(0)
    if len(every) > 1:
        bias, spread = float(every.mean()), 1.96 * float(every.std(ddof=1))
        ax.axhline(bias, color="black", label=f"bias {bias:.2f}")
        for limit in (bias - spread, bias + spread):
            ax.axhline(limit, color="black", linestyle="--")
    ax.set_xlabel("mean of biomarker and clinician PASI")
    ax.set_ylabel("biomarker - clinician PASI")
    ax.set_title("Bland-Altman, federated biomarker (95% limits dashed)")
    ax.legend(fontsize=8)
    figures["bland_altman"] = fig

    fig, ax = plt.subplots(figsize=(7, 4.2))
    sites = list(results["fairness"])
    width = 0.8 / max(len(sites), 1)
    for i, site in enumerate(sites):
        values = [results["fairness"][site].get(t, {}).get("mae") for t in FITZPATRICK]
        xs = [j + (i - (len(sites) - 1) / 2) * width for j in range(len(FITZPATRICK))]
        ax.bar(xs, [np.nan if v is None else v for v in values], width, label=site)
    ax.set_xticks(range(len(FITZPATRICK)), [f"type {t}" for t in FITZPATRICK])
    ax.set_ylabel("MAE (PASI points)")
    ax.set_title("Federated biomarker by Fitzpatrick skin type")
    ax.legend(fontsize=8)
    figures["fairness"] = fig

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, task, label in ((left, "biomarker", "MAE"), (right, "response", "AUROC")):
        ax.plot(range(1, len(curves[task]) + 1), curves[task], marker="o")
        ax.set_xlabel("round")
        ax.set_ylabel(
            f"{label}, sites' test rows" + (" (mean by rows)" if label == "AUROC" else "")
        )
        ax.set_title(f"{task}: federated, round by round")
    figures["learning"] = fig
    return figures


def _png(fig: plt.Figure) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(results: dict[str, Any], pngs: dict[str, bytes], meta: dict[str, Any]) -> str:
    """The report as one HTML file: tables, and each figure as an inline PNG."""
    sites = list(results["biomarker"]["federated"])
    released = meta["released"]
    cohort = _table(
        ["step", *sites],
        [
            [
                label,
                *(("suppressed" if released[s][k] is None else str(released[s][k])) for s in sites),
            ]
            for k, label in (
                ("psoriasis", "psoriasis"),
                ("biologic", "+ started a biologic"),
                ("photo", "+ photograph within 30 days of the start"),
            )
        ],
    )
    bio_ = results["biomarker"]
    bio = _table(
        ["site", "n_test", *(f"{LABELS[a]} MAE / ICC" for a in ARMS)],
        [
            [s, str(results["biomarker"]["federated"][s]["n_test"])]
            + [f"{_fmt(bio_[a][s]['mae'], 2)} / {_fmt(bio_[a][s]['icc'], 2)}" for a in ARMS]
            for s in sites
        ],
    )
    resp = _table(
        ["site", "n_test", *(f"{LABELS[a]} AUROC" for a in ARMS)],
        [
            [s, str(results["response"]["federated"][s]["n_test"])]
            + [_fmt(results["response"][a][s]["auroc"]) for a in ARMS]
            for s in sites
        ],
    )
    fair_ = results["fairness"]
    fair = _table(
        ["site", *(f"type {t}" for t in FITZPATRICK)],
        [
            [s]
            + [
                (f"{_fmt(fair_[s][t]['mae'], 2)} (n={fair_[s][t]['n']})" if t in fair_[s] else "-")
                for t in FITZPATRICK
            ]
            for s in sites
        ],
    )
    lora, full = results["bytes_per_round"]["lora"], results["bytes_per_round"]["full"]
    figures = "".join(
        f'<figure id="{name}"><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(pngs[name]).decode()}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for name, title in FIGURES.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>FLIP dermatology demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Psoriasis: a photograph biomarker and response to a biologic, across {len(sites)} hospitals</h1>
<p>Synthetic world (size {html.escape(str(meta["size"]))}, seed {meta["seed"]}); every site ingested
its own exports into its own OMOP CDM store; task SHA-256 <code>{meta["task_hash"]}</code>,
approved by each site admin before any row was read for training. Letters were de-identified,
then read by <b>{html.escape(meta["text_encoder"])}</b>{_tokens(meta)}. Photographs were
read by <b>{html.escape(meta.get("image_network", "a photograph network"))}</b>.
Federated on Flower (simulation engine, one ClientApp per site): FedAvg, {meta["rounds"]}
rounds of {meta["local_epochs"]} local epochs;
local-only and pooled models train {meta["rounds"] * meta["local_epochs"]} epochs on the same
splits. Every arm trains alike: AdamW in batches of 8, its learning rate decaying along a half
cosine over those epochs (a federated round at its epochs' rates).
Pooled is the ceiling: a real federation never pools records.</p>
<h2>Cohort: {html.escape(meta["cohort"])}</h2>
<p>Counts as each site releases them (below its threshold a count is suppressed).</p>
{cohort}
<h2>Digital biomarker: PASI from the photograph</h2>
<p>Mean absolute error in PASI points and agreement with the clinician's PASI (ICC(A,1)) on each
site's held-out photographs.</p>
{bio}
<h2>Response: PASI75 at week 16 from baseline photograph, features and letter</h2>
{resp}
<h2>Performance by Fitzpatrick skin type (federated biomarker, MAE)</h2>
{fair}
<h2>What travels</h2>
<p>The response model fine-tunes MiniLM with LoRA (rank 8 on query and value) inside the fused
model; each site sent {lora:,} bytes per round (LoRA adapters, the photograph network, heads
and fusion, measured on the arrays the federation exchanged) against {full:,} for full
fine-tuning of the same model ({100 * lora / full:.2f}%). The biomarker model sent
{meta["fused_bytes_per_round"]["biomarker"]:,} bytes per round. MiniLM's weights stay at the
sites; each loads its own registered copy, checked against the SHA-256 the task names.</p>
<h2>Figures</h2>
{figures}
</body></html>
"""


def _tokens(meta: dict[str, Any]) -> str:
    tokens = meta.get("max_tokens")
    return f" (first {tokens} tokens of each letter)" if tokens else ""


def write_outputs(
    out: Path,
    arms: dict[str, Any],
    curves: dict[str, list[float]],
    meta: dict[str, Any],
    text_bytes: dict[str, int],
) -> dict[str, Any]:
    """Write results.json, each figure as PNG and report.html under `out`; return results."""
    results = results_document(arms, text_bytes)
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    pngs = {name: _png(fig) for name, fig in _figures(results, arms, curves).items()}
    for name, data in pngs.items():
        (out / f"{name}.png").write_bytes(data)
    (out / "report.html").write_text(report_html(results, pngs, meta), encoding="utf-8")
    return results
