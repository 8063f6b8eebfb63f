"""The local runtime: train a task on one site's store, in process, with no network."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks.base import TaskSpec, load_splits
from flip.fl.tasks.runner import evaluate_task, train_task
from flip.fl.tasks.sandbox import Limits


def fit(
    spec: TaskSpec,
    train_split: TabularData,
    epochs: int,
    limits: Limits = Limits(),
    device: torch.device | None = None,
    bases: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The weights of a fresh model of the task trained on one dataset for `epochs` passes
    on `device` (a custom task's code in the sandbox, within `limits`; a task's adapters on
    the pretrained weights at `bases`, the site's local paths)."""
    state, _ = train_task(
        spec,
        None,
        train_split,
        epochs=epochs,
        seed=spec.seed,
        device=device,
        limits=limits,
        bases=bases,
    )
    return state


def train_local(store: str, spec: TaskSpec, rounds: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Train on one site alone, as many epochs as `rounds` federated rounds: the weights and
    the outcome's test-set metrics."""
    train_split, test_split, _ = load_splits(store, spec)
    state = fit(spec, train_split, rounds * spec.local_epochs)
    return state, evaluate_task(spec, state, test_split)
