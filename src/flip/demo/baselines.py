"""Baselines to judge federation by: each site alone, and all data pooled in one place.

Pooling is possible here only because the data are synthetic; in a real
federation no site's rows ever leave it.
"""

from __future__ import annotations

import numpy as np

from flip.data.features.tabular import TabularData
from flip.fl.runtime.local import fit, train_local
from flip.fl.tasks.base import TaskSpec, load_raw_splits, scaling_over
from flip.fl.tasks.runner import evaluate_task


def local_only(stores: dict[str, str], spec: TaskSpec, rounds: int) -> dict[str, dict[str, float]]:
    """Each site trains on its own training split and is tested on its own test split."""
    return {name: train_local(store, spec, rounds)[1] for name, store in stores.items()}


def pooled(stores: dict[str, str], spec: TaskSpec, rounds: int) -> dict[str, dict[str, float]]:
    """One model on every site's training split together, tested on each site's test split,
    all scaled as the federation scales them."""
    raw = {name: load_raw_splits(store, spec) for name, store in stores.items()}
    scaling = scaling_over(spec, [train for train, _ in raw.values()])
    splits = {
        name: (scaling.apply(train), scaling.apply(test)) for name, (train, test) in raw.items()
    }
    trains = [train for train, _ in splits.values()]
    union = TabularData(
        np.concatenate([t.person_ids for t in trains]),
        np.concatenate([t.x for t in trains]),
        np.concatenate([t.y for t in trains]),
        trains[0].feature_names,
    )
    state = fit(spec, union, rounds * spec.local_epochs)
    return {name: evaluate_task(spec, state, test) for name, (_, test) in splits.items()}
