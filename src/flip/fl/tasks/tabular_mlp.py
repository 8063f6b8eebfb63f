"""`tabular-mlp`: a small multilayer perceptron (one hidden layer of 32, ReLU)."""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights

HIDDEN = 32


def new_model(n_features: int, seed: int) -> torch.nn.Module:
    """An MLP whose initial weights depend only on `seed` (the same start everywhere)."""
    seed_weights(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
    )
