"""Seeding the weights a new model starts from."""

from __future__ import annotations

import torch


def seed_weights(seed: int) -> None:
    """Seed the CPU generator that initialises new layers, so first weights depend on `seed`.

    `torch.manual_seed` also queues the seed for every accelerator torch was built
    for, formatting the caller's stack each time; inside a Flower simulation actor
    that cost ~10 ms a message, a tenth of a small model's round.
    """
    torch.default_generator.manual_seed(seed)
