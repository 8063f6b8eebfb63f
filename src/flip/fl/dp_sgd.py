"""Record-level differential privacy at the site: DP-SGD with Opacus, and its accountant.

Each local epoch draws Poisson-sampled batches (rate q = 1 / ceil(n / batch size)),
clips every example's gradient to C and adds Gaussian noise of standard deviation
z*C to each batch's summed gradient. The epsilon a site has spent is Opacus's RDP
accountant over every step it took for the run. Sampling and noise use fresh OS
entropy: a seed in the (public) task spec would let anyone replay the noise.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
from torch.nn.functional import binary_cross_entropy_with_logits
from torch.utils.data import DataLoader, TensorDataset

from flip.data.features.tabular import TabularData


def steps_per_round(n: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps one round of `epochs` local epochs takes over `n` rows."""
    return epochs * math.ceil(n / batch_size)


def sample_rate(n: int, batch_size: int) -> float:
    """The Poisson sampling rate of each step's batch (Opacus's 1 / batches per epoch)."""
    return 1 / math.ceil(n / batch_size)


def record_epsilon(
    noise_multiplier: float, n: int, batch_size: int, steps: int, delta: float
) -> float:
    """Epsilon at `delta` spent by `steps` DP-SGD steps over `n` rows (Opacus's RDP accountant)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate(n, batch_size), steps)]
    return float(accountant.get_epsilon(delta))


def record_budget(
    report: dict[str, object],
    rows: dict[str, int],
    *,
    batch_size: int,
    epochs: int,
    rounds: int,
) -> dict[str, object]:
    """A record-level budget `report` (PrivacySpec.budget) with each site's epsilon, from its
    training `rows`, and the largest as `epsilon`."""
    by_site = {
        name: round(
            record_epsilon(
                float(report["noise_multiplier"]),  # type: ignore[arg-type]
                n,
                batch_size,
                rounds * steps_per_round(n, batch_size, epochs),
                float(report["delta"]),  # type: ignore[arg-type]
            ),
            4,
        )
        for name, n in rows.items()
    }
    return {**report, "epsilon": max(by_site.values(), default=None), "epsilon_by_site": by_site}


def train_dp(
    model: torch.nn.Module,
    data: TabularData,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    l2: float,
    noise_multiplier: float,
    clipping_norm: float,
) -> dict[str, float]:
    """Train `model` in place by DP-SGD for `epochs` passes; the mean loss and the examples."""
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    seed = int.from_bytes(os.urandom(8), "little") >> 1
    dataset = TensorDataset(torch.from_numpy(data.x), torch.from_numpy(data.y).unsqueeze(1))
    loader = DPDataLoader.from_data_loader(
        DataLoader(dataset, batch_size=batch_size),
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns of its non-secure RNG; entropy is fresh
        private = GradSampleModule(model, loss_reduction="sum")
        optimiser = DPOptimizer(
            torch.optim.SGD(private.parameters(), lr=learning_rate, weight_decay=l2),
            noise_multiplier=noise_multiplier,
            max_grad_norm=clipping_norm,
            expected_batch_size=batch_size,
            generator=torch.Generator().manual_seed(seed ^ 0x5DEECE66D),
        )
    total, seen = 0.0, 0
    private.train()
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            # Summed per-example losses: the optimiser clips each example's gradient, adds the
            # noise and divides by the expected batch size (an empty batch steps on noise).
            loss = binary_cross_entropy_with_logits(private(x), y, reduction="sum")
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            seen += len(y)
    private.remove_hooks()
    return {
        "loss": total / max(seen, 1),
        "train_loss": total / max(seen, 1),
        "num-examples": float(len(data.y)),
    }
