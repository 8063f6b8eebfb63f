"""`tabular-logreg`: logistic regression, one linear layer."""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights


def new_model(n_features: int, seed: int, n_outputs: int = 1) -> torch.nn.Module:
    """A logistic (or, with `n_outputs` classes, multinomial) regression with zero weights
    (the same start everywhere); with one output it also serves regression and Cox models."""
    seed_weights(seed)
    model = torch.nn.Linear(n_features, n_outputs)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    return model
