"""What each outcome trains on and is measured by: loss, predictions and metrics.

- binary: one logit, binary cross-entropy; AUROC, accuracy at 0.5, log loss.
- multiclass: one logit per class, cross-entropy; accuracy, macro-F1, log loss.
- regression: one output, mean squared error; RMSE, MAE, R².
- time-to-event: one log-hazard, Cox partial likelihood (Breslow ties); Harrell's C-index.

Every metric set also has `loss` and `num-examples`. `selection_score` turns any of
them into one number where higher is better, for picking a run's best round.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.nn import functional

EPS = 1e-7


def loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean training loss of outputs `out` (batch, outputs) against labels `y`."""
    if kind == "binary":
        return functional.binary_cross_entropy_with_logits(out, y.reshape(-1, 1))
    if kind == "multiclass":
        return functional.cross_entropy(out, y.long())
    if kind == "regression":
        return functional.mse_loss(out.reshape(-1), y)
    if kind == "time-to-event":
        return cox_loss(out.reshape(-1), y[:, 0], y[:, 1])
    raise ValueError(f"unknown outcome {kind!r}")


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood per event (Breslow's handling of tied times).

    Each event's risk set is everyone whose time is at least the event's; 0 with no event.
    """
    order = torch.argsort(time, descending=True, stable=True)
    risk, time, event = risk[order], time[order], event[order]
    running = torch.logcumsumexp(risk, dim=0)
    # a tied time's risk set reaches the last row with that time in descending order
    last = torch.searchsorted(-time.detach(), -time.detach(), right=True) - 1
    events = event.sum()
    if float(events) == 0:
        return risk.sum() * 0.0
    return -((risk - running[last]) * event).sum() / events


def predict(kind: str, out: torch.Tensor) -> np.ndarray:
    """Predictions from outputs: a probability (binary), class probabilities (multiclass),
    a value (regression) or a log-hazard (time-to-event)."""
    if kind == "binary":
        return torch.sigmoid(out).reshape(-1).numpy()
    if kind == "multiclass":
        return torch.softmax(out, dim=1).numpy()
    return out.reshape(-1).numpy()


def metrics(kind: str, p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The outcome's metrics of predictions `p` against labels `y`, with the example count."""
    if kind == "binary":
        return metrics_of(p, y)
    n = float(len(y))
    if not len(y):
        return {"loss": 0.0, "num-examples": 0.0}
    if kind == "multiclass":
        labels = y.astype(np.int64)
        chosen = p.argmax(axis=1)
        picked = p[np.arange(len(labels)), np.clip(labels, 0, p.shape[1] - 1)]
        return {
            "accuracy": float(np.mean(chosen == labels)),
            "macro_f1": macro_f1(labels, chosen, p.shape[1]),
            "loss": float(-np.mean(np.log(picked + EPS))),
            "num-examples": n,
        }
    if kind == "regression":
        error = p - y
        spread = float(np.sum((y - y.mean()) ** 2))
        return {
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.mean(np.abs(error))),
            "r2": 1.0 - float(np.sum(error**2)) / spread if spread > 0 else float("nan"),
            "loss": float(np.mean(error**2)),
            "num-examples": n,
        }
    if kind == "time-to-event":
        time, event = torch.from_numpy(y[:, 0]), torch.from_numpy(y[:, 1])
        with torch.no_grad():
            nll = cox_loss(torch.from_numpy(p), time, event)
        return {"c_index": c_index(y[:, 0], y[:, 1], p), "loss": float(nll), "num-examples": n}
    raise ValueError(f"unknown outcome {kind!r}")


def macro_f1(y: np.ndarray, chosen: np.ndarray, n_classes: int) -> float:
    """The mean over classes of F1, over the classes present in `y` or predicted."""
    scores = []
    for c in range(n_classes):
        true, guessed = y == c, chosen == c
        if not true.any() and not guessed.any():
            continue
        hits = float(np.sum(true & guessed))
        scores.append(2 * hits / (true.sum() + guessed.sum()))
    return float(np.mean(scores)) if scores else float("nan")


def c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance: of pairs where the earlier time is an event, the share whose
    earlier one has the higher risk (ties in risk count half); NaN with no such pair."""
    concordant, pairs = 0.0, 0
    for i in np.flatnonzero(event == 1):
        later = time > time[i]
        count = int(later.sum())
        if not count:
            continue
        pairs += count
        concordant += float(np.sum(risk[i] > risk[later]) + 0.5 * np.sum(risk[i] == risk[later]))
    return concordant / pairs if pairs else float("nan")


#: The metric that ranks a run's rounds, by outcome, and whether lower is better.
_SELECTION = (("auroc", 1.0), ("macro_f1", 1.0), ("c_index", 1.0), ("rmse", -1.0))


def reported(found: Mapping[str, object]) -> dict[str, float]:
    """The outcome's metrics of a site's evaluation as its result shows them: every number
    but the loss and the example count."""
    skip = ("loss", "train_loss", "num-examples")
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float) and k not in skip}


def selection_score(found: dict[str, float]) -> float:
    """One number per round, higher is better: AUROC, macro-F1, C-index or -RMSE (NaN: none)."""
    for name, sign in _SELECTION:
        if name in found:
            return sign * float(found[name])
    return float("nan")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks (as scipy's `rankdata`)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.ones(len(values), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values))
    ranks[order] = ((starts + 1 + ends) / 2)[np.cumsum(first) - 1]
    return ranks


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U, ties averaged); NaN if one class."""
    positives = int((y == 1).sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = average_ranks(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def metrics_of(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A binary outcome's AUROC, accuracy at 0.5, log loss and number of examples."""
    eps = EPS
    logloss = (
        float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))) if len(y) else 0.0
    )
    return {
        "auroc": auroc(y, p),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))) if len(y) else float("nan"),
        "loss": logloss,
        "num-examples": float(len(y)),
    }
