"""Personalised federated learning for file experiments: FedBN, FedPer and Ditto.

- `fedbn` (Li et al., 2021, "FedBN"): the model gains a batch-norm layer over its
  inputs; each site keeps its own (it absorbs the site's feature shift), the rest is
  averaged.
- `fedper` (Arivazhagan et al., 2019, "Federated learning with personalization
  layers"): each site keeps its own head (the last linear layer); the base is averaged.
  For a logistic regression the head is the whole model: FedPer is then local training.
- `ditto` (Li et al., 2021, "Ditto"): the global model trains as with the run's
  strategy; each site also trains a model of its own, pulled toward the global one by
  lambda/2 * ||v - w||^2.

What is a site's own stays in a file beside the site's data (`personal_path`) from one
round to the next; the experiment scores each site's personal model on that site's
test split, beside the global and local-only ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from flip.data.features.tabular import TabularData
from flip.fl.private_fit import LocalSettings
from flip.fl.tasks import binary
from flip.fl.tasks.models import model_factory

MODES = ("fedbn", "fedper", "ditto")


class SiteNorm(torch.nn.BatchNorm1d):
    """Batch norm over the input features; a batch of one row uses the running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise `x` by its batch's statistics in training, by the running ones otherwise."""
        if self.training and x.shape[0] < 2:
            return torch.nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def new_model(task: str, mode: str, n_features: int, seed: int) -> torch.nn.Module:
    """The task's model, behind a site-kept batch norm of its inputs under FedBN."""
    model = model_factory(task)(n_features, seed)
    if mode == "fedbn":
        return torch.nn.Sequential(SiteNorm(n_features), model)
    return model


def own_keys(model: torch.nn.Module, mode: str) -> list[str]:
    """The state-dict keys a site keeps for itself under `mode` (Ditto: none of the global's)."""
    if mode == "fedbn":
        kept = [name for name, m in model.named_modules() if isinstance(m, SiteNorm)]
    elif mode == "fedper":
        linear = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        kept = linear[-1:]
    else:
        return []
    return [key for key in model.state_dict() if any(key.startswith(f"{k}.") for k in kept)]


def personal_path(folder: Path, partition: int) -> Path:
    """Where site `partition` keeps what is its own between rounds."""
    return folder / f"personal-{partition}.pt"


def before_train(model: torch.nn.Module, mode: str, path: Path) -> None:
    """Put the site's own layers (kept from its last round) into the global `model`."""
    if mode in ("fedbn", "fedper") and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True), strict=False)


def after_train(
    model: torch.nn.Module,
    global_state: Mapping[str, torch.Tensor],
    data: TabularData,
    config: Mapping[str, Any],
    path: Path,
) -> None:
    """Keep the site's own part of this round: its layers (FedBN, FedPer), or its own model
    trained toward the global one this round started from (Ditto)."""
    mode = str(config["personal"])
    if mode != "ditto":
        state = model.state_dict()
        torch.save({k: state[k].clone() for k in own_keys(model, mode)}, path)
        return
    own = _ditto_model(model, global_state, path)
    centre = binary.load_arrays(copy.deepcopy(model), dict(global_state))
    anchor = [p.detach().clone() for p in centre.parameters()]
    binary.train(
        own,
        data,
        **asdict(LocalSettings.of_config(config)),
        seed=int(config["seed"]) * 1000 + int(config.get("server-round", 0)) + 500,
        proximal_mu=float(config["ditto-lambda"]),
        anchor=anchor,
    )
    torch.save(own.state_dict(), path)


def _ditto_model(
    shell: torch.nn.Module, global_state: Mapping[str, torch.Tensor], path: Path
) -> torch.nn.Module:
    """The site's Ditto model: kept from its last round, or the global one in round 1."""
    own = copy.deepcopy(shell)
    state = torch.load(path, weights_only=True) if path.exists() else dict(global_state)
    return binary.load_arrays(own, state)


def site_model(global_model: torch.nn.Module, mode: str, path: Path) -> torch.nn.Module:
    """A site's personal model after the run: the global one with the site's own layers, or
    (Ditto) the site's own model; the global one where the site kept nothing."""
    model = copy.deepcopy(global_model)
    if not path.exists():
        return model
    kept = torch.load(path, weights_only=True)
    model.load_state_dict(kept, strict=mode == "ditto")
    return model
