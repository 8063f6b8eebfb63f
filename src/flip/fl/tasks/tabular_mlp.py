"""`tabular-mlp`: a small multilayer perceptron (one hidden layer of 32, ReLU)."""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights

HIDDEN = 32


def new_model(n_features: int, seed: int, n_outputs: int = 1) -> torch.nn.Module:
    """An MLP with `n_outputs` outputs whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, n_outputs)
    )
