"""One site's training or evaluation of a task, whatever its kind and outcome.

Built-in kinds train in this process with FLIP's loop for the task's outcome; a custom
task runs in the sandbox (its own `train`/`evaluate` when it defines them). Weights go
in and out as state dicts on the CPU; `device` is where the site trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks import training
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.binary import load_arrays
from flip.fl.tasks.models import new_model
from flip.fl.tasks.sandbox import Limits, initial_weights, run_custom

State = dict[str, Any]


def _config(spec: TaskSpec, **more: float | int | str) -> dict[str, float | int | str]:
    """What a custom task's train/evaluate receives besides the arrays and device."""
    return {
        "outcome": spec.data.outcome,
        "n_outputs": spec.data.n_outputs,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "l2": spec.l2,
        **more,
    }


def site_model(spec: TaskSpec, bases: Mapping[str, Path] | None) -> torch.nn.Module:
    """The task's model with its pretrained encoders loaded from `bases`; a task with adapters
    never trains or evaluates without them."""
    if spec.adapters and bases is None:
        raise ValueError(f"{spec.name}: its adapters need the site's pretrained weights")
    return new_model(spec, bases)


def train_task(
    spec: TaskSpec,
    state: State | None,
    data: TabularData,
    *,
    epochs: int,
    seed: int,
    device: torch.device | None = None,
    limits: Limits = Limits(),
    bases: Mapping[str, Path] | None = None,
) -> tuple[State, dict[str, float]]:
    """`epochs` passes over `data` from `state` (None: the task's fresh model), with the
    task's FedProx term: the trained state dict and the training metrics. A task with
    adapters needs `bases`, the site's local paths of its pretrained weights."""
    device = device or torch.device("cpu")
    mu = spec.strategy.proximal_mu
    if spec.kind == "custom":
        config = _config(spec, epochs=epochs, seed=seed, proximal_mu=mu)
        if state is None:
            state = initial_weights(spec.model_dump_json(), limits=limits)
        trained, metrics = run_custom(
            "train",
            spec.model_dump_json(),
            state,
            data.x,
            data.y,
            config,
            device=str(device),
            limits=limits,
        )
        return trained or {}, metrics
    model = site_model(spec, bases)
    if state is not None:
        load_arrays(model, state)
    metrics = training.train(
        model,
        data,
        epochs=epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        l2=spec.l2,
        seed=seed,
        proximal_mu=mu,
        outcome=spec.data.outcome,
        device=device,
    )
    return model.state_dict(), metrics


def evaluate_task(
    spec: TaskSpec,
    state: State,
    data: TabularData,
    *,
    device: torch.device | None = None,
    limits: Limits = Limits(),
    bases: Mapping[str, Path] | None = None,
) -> dict[str, float]:
    """The task's metrics of `state` on `data` (a custom task's own, if it defines them);
    `bases` as for `train_task`."""
    device = device or torch.device("cpu")
    if spec.kind == "custom":
        _, metrics = run_custom(
            "evaluate",
            spec.model_dump_json(),
            state,
            data.x,
            data.y,
            _config(spec),
            device=str(device),
            limits=limits,
        )
        return metrics
    model = load_arrays(site_model(spec, bases), state)
    return training.evaluate(model, data, spec.data.outcome, device)
