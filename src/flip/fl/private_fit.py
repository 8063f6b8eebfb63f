"""One round of a site's local training under its privacy spec, for every ClientApp.

Record-level DP trains by DP-SGD (Opacus); local DP trains as the task says and clips and
noises the update before it leaves; otherwise the task's own training runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from flip.data.features.tabular import TabularData
from flip.fl.privacy import PrivacySpec, privatise


@dataclass(frozen=True)
class LocalSettings:
    """How a site trains in one round: passes over its rows, SGD step, batch and L2."""

    epochs: int
    learning_rate: float
    batch_size: int
    l2: float

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> LocalSettings:
        """The settings a round's config sends (`local-epochs`, `learning-rate`, ...)."""
        return cls(
            epochs=int(config["local-epochs"]),
            learning_rate=float(config["learning-rate"]),
            batch_size=int(config["batch-size"]),
            l2=float(config["l2"]),
        )


def numpy_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state dict's arrays as numpy, on the CPU."""
    return {
        k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        for k, v in state.items()
    }


def private_fit(
    state: Mapping[str, Any],
    data: TabularData,
    privacy: PrivacySpec | None,
    settings: LocalSettings,
    *,
    model: Callable[[], torch.nn.Module],
    train: Callable[[], tuple[Mapping[str, Any], dict[str, float]]],
    own: Collection[str] = (),
) -> tuple[dict[str, Any], dict[str, float]]:
    """(trained state dict, metrics) of one round from the global `state`: DP-SGD on
    `model()` (loaded with `state`) under record-level DP, else `train()`, whose update from
    `state` is clipped and noised here under local DP (`privatise`: UpdateRefused when it
    cannot be). The site's `own` layers (a personalised task's, never sent) are left out of
    the clipped and noised update: noise added to them each round would never average out."""
    if privacy is not None and privacy.level == "record":
        from flip.fl.dp_sgd import train_dp

        network = model()
        metrics = train_dp(
            network,
            data,
            **asdict(settings),
            noise_multiplier=privacy.noise_multiplier,
            clipping_norm=privacy.clipping_norm,
        )
        return network.state_dict(), metrics
    trained, metrics = train()
    if privacy is None or privacy.mechanism != "local":
        return dict(trained), metrics
    shared = [k for k in {**state, **trained} if k not in own]
    noised = privatise(
        numpy_arrays({k: state[k] for k in shared if k in state}),
        numpy_arrays({k: trained[k] for k in shared if k in trained}),
        privacy,
    )
    sent = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in noised.items()}
    return {k: sent.get(k, v) for k, v in trained.items()}, metrics
