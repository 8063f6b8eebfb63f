"""The dermatology models' two reference arms on the same splits as the federation: each
site alone, and pooled (every site's training rows in one place, possible only because the
data are synthetic). Both train as many epochs as the federation's rounds x local epochs,
with the same loop (`flip.fl.tasks.dermatology_training`) and the same frozen encoder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flip.fl.tasks.dermatology import Adaptable, new_model
from flip.fl.tasks.dermatology_task import DermatologyTask, Model
from flip.fl.tasks.dermatology_training import Split, fit


def fresh(task: DermatologyTask, model: Model, base: Path | None) -> Adaptable:
    """A new model of the task, its text encoder (if any) loaded from `base`."""
    recipe = task.recipe(model)
    adapter = task.text.adapter if recipe.n_text else None
    return new_model(recipe.n_features, recipe.n_text, recipe.image, task.seed, adapter, base)


def trained(
    task: DermatologyTask, model: Model, state: Mapping[str, Any], base: Path | None
) -> Adaptable:
    """The model with the trainable arrays `state` (the federation's final ones)."""
    found = fresh(task, model, base)
    found.load_state_dict(dict(state))
    return found


def local_only(
    task: DermatologyTask, model: Model, trains: dict[str, Split], base: Path | None
) -> dict[str, Adaptable]:
    """Each site's own model on its own training rows."""
    recipe = task.recipe(model)
    models = {}
    for name, rows in trains.items():
        models[name] = fresh(task, model, base)
        fit(models[name], recipe, rows, task.rounds * task.local_epochs, task.seed)
    return models


def pooled(
    task: DermatologyTask, model: Model, trains: dict[str, Split], base: Path | None
) -> Adaptable:
    """One model on every site's training rows together."""
    found = fresh(task, model, base)
    rows = Split.join(list(trains.values()))
    fit(found, task.recipe(model), rows, task.rounds * task.local_epochs, task.seed)
    return found
