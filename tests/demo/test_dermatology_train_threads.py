"""The reference arms train on one torch thread and give the process its threads back."""

import torch

from flip.demo.dermatology.train import training_threads


def test_training_threads_sets_then_restores_torch_threads():
    before = torch.get_num_threads()
    with training_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_threads_are_restored_when_training_fails():
    before = torch.get_num_threads()
    try:
        with training_threads(1):
            raise RuntimeError("training failed")
    except RuntimeError:
        pass
    assert torch.get_num_threads() == before
