"""The dermatology training loop's schedule: one learning rate per epoch of the whole training,
decaying along a half cosine, the same for a federated site's round and the references."""

import itertools

import numpy as np

from flip.data.features.dermatology import FEATURES
from flip.data.features.text import TextSpec
from flip.fl.tasks.dermatology import new_model
from flip.fl.tasks.dermatology_task import DermatologyTask
from flip.fl.tasks.dermatology_training import Split, epoch_rate, fit


def _task(rounds: int = 20, local_epochs: int = 1) -> DermatologyTask:
    return DermatologyTask(
        name="psoriasis",
        cohort="psoriasis, started a biologic",
        features=FEATURES,
        text=TextSpec(encoder="hashed", dims=16),
        image_size=16,
        rounds=rounds,
        local_epochs=local_epochs,
    )


def test_the_learning_rate_decays_over_every_epoch_of_the_federation():
    recipe = _task(rounds=10, local_epochs=2).recipe("biomarker")
    rates = [epoch_rate(recipe, e) for e in range(20)]
    assert rates[0] == recipe.learning_rate
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))
    assert rates[-1] < 0.01 * recipe.learning_rate
    assert epoch_rate(recipe, 20) == 0.0


def test_a_late_epoch_of_the_schedule_moves_the_weights_less_than_an_early_one():
    task = _task(rounds=20)
    recipe = task.recipe("biomarker")
    rng = np.random.default_rng(0)
    data = Split(
        np.eye(6, dtype=np.float32)[rng.integers(0, 6, 8)],
        np.zeros((8, 0), np.float32),
        rng.random((8, 3, 16, 16), dtype=np.float32),
        rng.uniform(0, 30, 8).astype(np.float32),
    )
    moved = []
    for first in (0, 19):
        model = new_model(6, 0, True, seed=0)
        before = [p.detach().clone() for p in model.parameters()]
        fit(model, recipe, data, 1, seed=1, first_epoch=first)
        moved.append(
            sum(float((p - b).norm()) for p, b in zip(model.parameters(), before, strict=True))
        )
    assert moved[1] < 0.1 * moved[0]
