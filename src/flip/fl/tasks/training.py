"""Mini-batch SGD for any torch model and outcome, on the device the site chose."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks import outcomes

#: What a site may name as its training device: `auto` takes a GPU when there is one.
DEVICES = ("auto", "cpu", "cuda")


def choose_device(
    wanted: str = "auto", cuda_available: Callable[[], bool] = torch.cuda.is_available
) -> torch.device:
    """The device to train on: `cuda` (its first GPU, or `cuda:N`) when asked or, with `auto`,
    when one is present; else the CPU. Asking for a GPU the site lacks is an error."""
    if wanted == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if not cuda_available():
            raise ValueError(f"device {wanted!r}: torch finds no CUDA GPU on this machine")
        return torch.device(wanted)
    raise ValueError(f"device {wanted!r}: use auto, cpu, cuda or cuda:N")


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
    outcome: str = "binary",
    device: torch.device | None = None,
) -> dict[str, float]:
    """Train in place for `epochs` passes on `device` (the model ends on the CPU); return
    the mean loss and the number of examples.

    With `proximal_mu` (FedProx), the loss adds mu/2 * ||w - w_start||^2; `anchor` (one
    tensor per parameter) replaces w_start, as Ditto's pull toward the global model does.
    """
    device = device or torch.device("cpu")
    model.to(device)
    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=l2)
    if anchor is None:
        anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu else []
    anchor = [a.to(device) for a in anchor]
    generator = torch.Generator().manual_seed(seed)
    losses: list[torch.Tensor] = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        shuffled_x, shuffled_y = x[order], y[order]  # each batch is then a view, not a gather
        for start in range(0, len(y), batch_size):
            optimiser.zero_grad()
            end = start + batch_size
            loss = outcomes.loss(outcome, model(shuffled_x[start:end]), shuffled_y[start:end])
            if proximal_mu:
                drift = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + proximal_mu / 2 * drift
            loss.backward()
            optimiser.step()
            losses.append(loss.detach())
    model.to("cpu")
    mean = 0.0
    if losses:  # each batch's mean loss weighted by its size, in one product after the loop
        sizes = [min(batch_size, len(y) - at) for at in range(0, len(y), batch_size)] * epochs
        total = torch.stack(losses).cpu() @ torch.tensor(sizes, dtype=losses[0].dtype)
        mean = float(total) / (epochs * len(y))
    return {"loss": mean, "train_loss": mean, "num-examples": float(len(y))}


def predict(
    model: torch.nn.Module,
    x: np.ndarray,
    outcome: str = "binary",
    device: torch.device | None = None,
) -> np.ndarray:
    """The outcome's predictions for rows `x` (see `outcomes.predict`)."""
    device = device or torch.device("cpu")
    model.to(device).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x).to(device)).cpu()
    model.to("cpu")
    return outcomes.predict(outcome, out)


def evaluate(
    model: torch.nn.Module,
    data: TabularData,
    outcome: str = "binary",
    device: torch.device | None = None,
) -> dict[str, float]:
    """The outcome's metrics of `model` on `data` and the number of examples."""
    return outcomes.metrics(outcome, predict(model, data.x, outcome, device), data.y)
