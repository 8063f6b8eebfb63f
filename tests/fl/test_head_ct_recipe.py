"""The head-ct-infarct task's recipe (window, network, batch size, step, local epochs) learns
the infarct: one round's local training on synthetic head CTs, pooled, ranks held-out scans
from another hospital and seed well above chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flip.data.features.tabular import TabularData
from flip.data.features.volume import normalised, resized
from flip.fl.tasks.catalog import head_ct_infarct_task
from flip.fl.tasks.runner import evaluate_task, train_task
from flip.synth.radiology import default_sites, draw_site


@pytest.fixture
def one_thread():
    """Small 3D convolutions run fastest on one thread on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _volumes(site_index: int, people: int, seed: int) -> TabularData:
    """The site's studies read as the task reads them: windowed, resized, after age and sex."""
    image = head_ct_infarct_task().data.image
    studies = draw_site(default_sites(3, people)[site_index], seed)
    pixels = np.stack(
        [resized(normalised(s.volume, image.window), image.depth, image.size) for s in studies]
    ).reshape(len(studies), -1)
    x = np.hstack([np.zeros((len(studies), 2), dtype=np.float32), pixels])
    y = np.array([s.infarct for s in studies], dtype=np.float32)
    return TabularData(np.arange(len(studies)), x, y, [])


def test_one_round_of_local_training_learns_the_infarct(one_thread):
    spec = head_ct_infarct_task()
    train = [_volumes(0, 40, seed=0), _volumes(1, 40, seed=0)]
    pooled = TabularData(
        np.arange(80), np.vstack([d.x for d in train]), np.concatenate([d.y for d in train]), []
    )
    held_out = _volumes(2, 60, seed=1)

    state, _ = train_task(spec, None, pooled, epochs=spec.local_epochs, seed=0)
    metrics = evaluate_task(spec, state, held_out)

    assert metrics["auroc"] > 0.8, metrics
