"""`tabular-logreg`: logistic regression, one linear layer."""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights


def new_model(n_features: int, seed: int) -> torch.nn.Module:
    """A logistic regression with zero weights (the same start everywhere)."""
    seed_weights(seed)
    model = torch.nn.Linear(n_features, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    return model
