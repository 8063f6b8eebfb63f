"""The issue's bar, read off a run's results.json: figures beside the thresholds they are
judged by (the demo reports them; nothing is tuned to meet them)."""

from __future__ import annotations

from typing import Any


def smallest_site(results: dict[str, Any]) -> str:
    """The site with the fewest biomarker test photographs (the smallest hospital)."""
    fed = results["biomarker"]["federated"]
    return min(fed, key=lambda s: fed[s]["n_test"])


def bar_figures(results: dict[str, Any]) -> list[str]:
    """One line per figure of the bar."""
    bio, resp = results["biomarker"], results["response"]
    small = smallest_site(results)
    lines = [
        f"biomarker at the smallest site ({small}): federated MAE "
        f"{_f(bio['federated'][small]['mae'])} vs local-only {_f(bio['local'][small]['mae'])} "
        "(bar: federated lower)"
    ]
    for site, fed in bio["federated"].items():
        pooled = bio["pooled"][site]["mae"]
        ratio = None if fed["mae"] is None or not pooled else fed["mae"] / pooled
        lines.append(
            f"biomarker at {site}: federated MAE {_f(fed['mae'])} / pooled {_f(pooled)} = "
            f"{_f(ratio)} (bar: <= 1.10)"
        )
    for site, fed in resp["federated"].items():
        pooled = resp["pooled"][site]["auroc"]
        gap = None if fed["auroc"] is None or pooled is None else pooled - fed["auroc"]
        lines.append(
            f"response at {site}: pooled AUROC {_f(pooled)} - federated {_f(fed['auroc'])} = "
            f"{_f(gap)} (bar: <= 0.03; n_test {fed['n_test']})"
        )
    lora, full = results["bytes_per_round"]["lora"], results["bytes_per_round"]["full"]
    lines.append(
        f"bytes per round of the response model (MiniLM with LoRA): sent {lora:,} / full "
        f"fine-tuning {full:,} = {lora / full:.2%} (bar: <= 5%)"
    )
    return lines


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
