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

In file experiments what is a site's own stays in a file beside the site's data
(`personal_path`) from one round to the next, and the experiment scores each site's
personal model on that site's test split, beside the global and local-only ones. Hub
tasks name their mode in `TaskSpec.personal`; the deployment ClientApp keeps the site's
own part in Flower's node state (`flip.fl.site_personal`), never sending it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
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


def with_site_norm(model: torch.nn.Module, mode: str | None, n_features: int) -> torch.nn.Module:
    """`model` behind a site-kept batch norm of its inputs under FedBN; as it is otherwise."""
    if mode == "fedbn":
        return torch.nn.Sequential(SiteNorm(n_features), model)
    return model


def new_model(task: str, mode: str, n_features: int, seed: int) -> torch.nn.Module:
    """The task's model, behind a site-kept batch norm of its inputs under FedBN."""
    return with_site_norm(model_factory(task)(n_features, seed), mode, n_features)


def own_keys(model: torch.nn.Module, mode: str | None) -> list[str]:
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


def _load(path: Path) -> dict[str, torch.Tensor] | None:
    return torch.load(path, weights_only=True) if path.exists() else None


class ForeignState(ValueError):
    """What a site kept does not hold exactly the layers the mode keeps for this model."""


def _own_only(model: torch.nn.Module, mode: str, kept: Mapping[str, Any]) -> dict[str, Any]:
    """`kept`, once it holds exactly `model`'s own layers under `mode`; ForeignState else."""
    keys = set(own_keys(model, mode))
    if set(kept) != keys:
        raise ForeignState(
            f"the state kept holds {sorted(set(kept) - keys) or 'not all'} of the layers "
            f"{mode} keeps ({sorted(keys)}): not this task's"
        )
    return dict(kept)


def with_own(model: torch.nn.Module, mode: str | None, kept: Mapping[str, Any] | None) -> None:
    """Put the site's own layers (`kept` from its last round, if any) into the global `model`;
    ForeignState if `kept` holds other layers than the mode keeps."""
    if mode in ("fedbn", "fedper") and kept:
        model.load_state_dict(_own_only(model, mode, kept), strict=False)


def before_train(model: torch.nn.Module, mode: str, path: Path) -> None:
    """Put the site's own layers (kept in `path` from its last round) into the global `model`."""
    with_own(model, mode, _load(path))


#: Trains a site's own Ditto model in place, pulled toward the anchor (the global parameters).
TrainOwn = Callable[[torch.nn.Module, list[torch.Tensor]], object]


def kept_after(
    model: torch.nn.Module,
    global_state: Mapping[str, Any],
    mode: str,
    kept: Mapping[str, Any] | None,
    train_own: TrainOwn,
) -> dict[str, torch.Tensor]:
    """What a site keeps of this round: its layers of the trained `model` (FedBN, FedPer), or
    its own model (`kept`; the global one in round 1) trained by `train_own` toward the
    global one this round started from (Ditto)."""
    if mode != "ditto":
        state = model.state_dict()
        return {k: state[k].detach().clone() for k in own_keys(model, mode)}
    own = binary.load_arrays(copy.deepcopy(model), dict(kept or global_state))
    centre = binary.load_arrays(copy.deepcopy(model), dict(global_state))
    train_own(own, [p.detach().clone() for p in centre.parameters()])
    return own.state_dict()


def after_train(
    model: torch.nn.Module,
    global_state: Mapping[str, torch.Tensor],
    data: TabularData,
    config: Mapping[str, Any],
    path: Path,
) -> None:
    """Keep the site's own part of this round in `path`: its layers (FedBN, FedPer), or its own
    model trained toward the global one this round started from (Ditto)."""

    def train_own(own: torch.nn.Module, anchor: list[torch.Tensor]) -> None:
        binary.train(
            own,
            data,
            **asdict(LocalSettings.of_config(config)),
            seed=int(config["seed"]) * 1000 + int(config.get("server-round", 0)) + 500,
            proximal_mu=float(config["ditto-lambda"]),
            anchor=anchor,
        )

    mode = str(config["personal"])
    torch.save(kept_after(model, global_state, mode, _load(path), train_own), path)


def sent(
    trained: Mapping[str, Any], received: Mapping[str, Any], keys: list[str]
) -> dict[str, Any]:
    """What a site sends: `trained` with its own layers (`keys`) as the global ones it received,
    so nothing of them leaves and averaging leaves them as they were."""
    return {k: received[k] if k in keys else v for k, v in trained.items()}


def personal_model(
    global_model: torch.nn.Module, mode: str, kept: Mapping[str, Any] | None
) -> torch.nn.Module:
    """A site's personal model: the global one with the site's own layers, or (Ditto) the
    site's own model; the global one where the site kept nothing."""
    model = copy.deepcopy(global_model)
    if kept and mode == "ditto":
        model.load_state_dict(dict(kept))
    elif kept:
        model.load_state_dict(_own_only(model, mode, kept), strict=False)
    return model


def site_model(global_model: torch.nn.Module, mode: str, path: Path) -> torch.nn.Module:
    """A site's personal model after the run, from what it kept in `path` (`personal_model`)."""
    return personal_model(global_model, mode, _load(path))
