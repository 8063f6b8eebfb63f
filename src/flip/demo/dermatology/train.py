"""The dermatology models' two reference arms on the same splits as the federation: each
site alone, and pooled (every site's training rows in one place, possible only because the
data are synthetic). Both train as many epochs as the federation's rounds x local epochs,
with the same loop (`flip.fl.tasks.dermatology_training`), the same frozen encoder and the
same start of the photograph network (the task's pretrained weights, when it names them).
They train on one thread, as each site does in the federation: batches of 8 gain little from
a second one, and on a shared machine its waits burn several times the CPU (`TRAINING_THREADS`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from flip.fl.tasks.dermatology import Adaptable, new_model, start_image
from flip.fl.tasks.dermatology_task import DermatologyTask, Model
from flip.fl.tasks.dermatology_training import Split, fit

#: Torch threads the references train on (measured under load on 2 cores: one epoch of the
#: response model took 4.9 CPU s on one thread, 23.5 on two).
TRAINING_THREADS = 1


@contextmanager
def training_threads(n: int = TRAINING_THREADS) -> Iterator[None]:
    """Run the block with torch on `n` threads, then restore the process's number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fresh(
    task: DermatologyTask, model: Model, base: Path | None, image_base: Path | None = None
) -> Adaptable:
    """A new model of the task, its text encoder (if any) loaded from `base` and its
    photograph network started from `image_base` (the task's image weights) if given."""
    recipe = task.recipe(model)
    adapter = task.text.adapter if recipe.n_text else None
    found = new_model(recipe.n_features, recipe.n_text, recipe.image, task.seed, adapter, base)
    if image_base is not None and task.image_weights is not None:
        start_image(found, image_base, task.image_weights.sha256)
    return found


def trained(
    task: DermatologyTask, model: Model, state: Mapping[str, Any], base: Path | None
) -> Adaptable:
    """The model with the trainable arrays `state` (the federation's final ones)."""
    found = fresh(task, model, base)
    found.load_state_dict(dict(state))
    return found


def local_only(
    task: DermatologyTask,
    model: Model,
    trains: dict[str, Split],
    base: Path | None,
    image_base: Path | None = None,
) -> dict[str, Adaptable]:
    """Each site's own model on its own training rows."""
    recipe = task.recipe(model)
    models = {}
    for name, rows in trains.items():
        models[name] = fresh(task, model, base, image_base)
        with training_threads():
            fit(models[name], recipe, rows, task.rounds * task.local_epochs, task.seed)
    return models


def pooled(
    task: DermatologyTask,
    model: Model,
    trains: dict[str, Split],
    base: Path | None,
    image_base: Path | None = None,
) -> Adaptable:
    """One model on every site's training rows together."""
    found = fresh(task, model, base, image_base)
    rows = Split.join(list(trains.values()))
    with training_threads():
        fit(found, task.recipe(model), rows, task.rounds * task.local_epochs, task.seed)
    return found
