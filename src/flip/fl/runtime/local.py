"""The local runtime: train a task on one site's store, in process, with no network."""

from __future__ import annotations

import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks import binary
from flip.fl.tasks.base import TaskSpec, load_splits
from flip.fl.tasks.models import new_model


def fit(spec: TaskSpec, train_split: TabularData, epochs: int) -> torch.nn.Module:
    """Train a fresh model of the task on one dataset for `epochs` passes."""
    model = new_model(spec)
    binary.train(
        model,
        train_split,
        epochs=epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        l2=spec.l2,
        seed=spec.seed,
    )
    return model


def train_local(
    store: str, spec: TaskSpec, rounds: int
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train on one site alone, as many epochs as `rounds` federated rounds; test-set metrics."""
    train_split, test_split, _ = load_splits(store, spec)
    model = fit(spec, train_split, rounds * spec.local_epochs)
    return model, binary.evaluate(model, test_split)
