"""Training and evaluation of any torch binary classifier (one logit out) by mini-batch SGD."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from flip.data.features.tabular import TabularData


def load_arrays(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Load parameters into `model`, by name, or in order when a strategy dropped the names."""
    own = model.state_dict()
    if set(state) != set(own):
        if len(state) != len(own):
            raise ValueError(f"expected {len(own)} parameter arrays, got {len(state)}")
        state = dict(zip(own, state.values(), strict=True))
    model.load_state_dict({k: torch.as_tensor(v).reshape(own[k].shape) for k, v in state.items()})
    return model


def train(
    model: torch.nn.Module,
    data: TabularData,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    l2: float,
    seed: int,
    proximal_mu: float = 0.0,
    anchor: list[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train in place for `epochs` passes; return the mean loss and the number of examples.

    With `proximal_mu` (FedProx), the loss adds mu/2 * ||w - w_start||^2; `anchor` (one
    tensor per parameter) replaces w_start, as Ditto's pull toward the global model does.
    """
    x = torch.from_numpy(data.x)
    y = torch.from_numpy(data.y).unsqueeze(1)
    optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=l2)
    if anchor is None:
        anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu else []
    generator = torch.Generator().manual_seed(seed)
    losses: list[torch.Tensor] = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        shuffled_x, shuffled_y = x[order], y[order]  # each batch is then a view, not a gather
        for start in range(0, len(y), batch_size):
            optimiser.zero_grad()
            end = start + batch_size
            loss = binary_cross_entropy_with_logits(
                model(shuffled_x[start:end]), shuffled_y[start:end]
            )
            if proximal_mu:
                drift = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + proximal_mu / 2 * drift
            loss.backward()
            optimiser.step()
            losses.append(loss.detach())
    mean = 0.0
    if losses:  # each batch's mean loss weighted by its size, in one product after the loop
        sizes = [min(batch_size, len(y) - at) for at in range(0, len(y), batch_size)] * epochs
        total = torch.stack(losses) @ torch.tensor(sizes, dtype=losses[0].dtype)
        mean = float(total) / (epochs * len(y))
    return {"loss": mean, "train_loss": mean, "num-examples": float(len(y))}


def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted probabilities of the outcome."""
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))).squeeze(1).numpy()


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


def evaluate(model: torch.nn.Module, data: TabularData) -> dict[str, float]:
    """AUROC, accuracy at 0.5, log loss and the number of test examples."""
    return metrics_of(predict(model, data.x), data.y)


def metrics_of(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUROC, accuracy at 0.5, log loss and the number of examples of predictions `p`."""
    eps = 1e-7
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))) if len(y) else 0.0
    return {
        "auroc": auroc(y, p),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))) if len(y) else float("nan"),
        "loss": loss,
        "num-examples": float(len(y)),
    }
