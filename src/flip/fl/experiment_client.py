"""The ClientApp of file experiments (`flip fl run`): each node trains on one prepared site.

The driver writes each site's encoded splits to FLIP_EXPERIMENT_DIR/site-<partition>.npz;
node <partition> reads only its own, and trains on its training split and evaluates
rounds on its validation split (the test split is the driver's, for the final report).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flip.data.features.tabular import TabularData
from flip.fl import personal
from flip.fl.privacy import KEY_PRIVACY, PrivacySpec
from flip.fl.private_fit import LocalSettings, private_fit
from flip.fl.tasks import binary, tabular_xgboost

EXPERIMENT_ENV = "FLIP_EXPERIMENT_DIR"
XGBOOST = "tabular-xgboost"

app = ClientApp()


@lru_cache(maxsize=4096)
def load_site(partition: int) -> tuple[str, TabularData, TabularData]:
    """(site name, train split, validation split) of one node."""
    path = Path(os.environ[EXPERIMENT_ENV]) / f"site-{partition}.npz"
    with np.load(path) as f:
        arrays = {key: f[key] for key in f.files}
    return str(arrays["name"]), _split(arrays, "train"), _split(arrays, "validation")


def _split(arrays: dict[str, np.ndarray], part: str) -> TabularData:
    y = arrays[f"{part}_y"]
    return TabularData(np.arange(len(y)), arrays[f"{part}_x"], y, [])


@lru_cache(maxsize=16)
def _shell(task: str, mode: str, n_features: int) -> torch.nn.Module:
    """One model per task, personalisation and width in this process; every message loads
    all its weights."""
    return personal.new_model(task, mode, n_features, 0)


def _model(config: ConfigRecord, arrays: ArrayRecord, n_features: int) -> torch.nn.Module:
    shell = _shell(str(config["task"]), str(config.get("personal", "")), n_features)
    return binary.load_arrays(shell, arrays.to_torch_state_dict())


def _booster(arrays: ArrayRecord) -> bytes:
    return arrays["0"].numpy().tobytes()


def train_round(model, data: TabularData, config: Mapping[str, Any]) -> dict[str, float]:
    """One round of local training as the round's config says (FedProx's term when asked);
    under local DP the update is clipped and noised here, under record-level DP it is
    DP-SGD (Opacus) (`private_fit`)."""
    privacy = (
        PrivacySpec.model_validate_json(str(config[KEY_PRIVACY])) if KEY_PRIVACY in config else None
    )
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def fit() -> tuple[dict[str, Any], dict[str, float]]:
        metrics = _train(model, data, config)
        return model.state_dict(), metrics

    settings = LocalSettings.of_config(config)
    trained, metrics = private_fit(start, data, privacy, settings, model=lambda: model, train=fit)
    model.load_state_dict(trained)
    return metrics


def _train(model, data: TabularData, config: Mapping[str, Any]) -> dict[str, float]:
    return binary.train(
        model,
        data,
        **asdict(LocalSettings.of_config(config)),
        seed=int(config["seed"]) * 1000 + int(config.get("server-round", 0)),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local epochs on this site's training split (FedProx's proximal term when asked), with
    the site's own layers or model under personalisation (`flip.fl.personal`).

    For tabular-xgboost: `local-epochs` new trees on top of the global booster.
    """
    partition = int(context.node_config["partition-id"])
    _, train_split, _ = load_site(partition)
    config = msg.content["config"]
    if config["task"] == XGBOOST:
        cyclic = config.get("strategy") == "fedxgb_cyclic"
        trees = tabular_xgboost.boost(
            _booster(msg.content["arrays"]),
            train_split,
            int(config["local-epochs"]),
            int(config["seed"]) * 1000 + int(config.get("server-round", 0)),
            1 if cyclic else int(config["n-sites"]),
            whole=cyclic,
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.frombuffer(trees, dtype=np.uint8)]),
                "metrics": MetricRecord({"num-examples": float(len(train_split.y))}),
            }
        )
        return Message(content=content, reply_to=msg)
    model = _model(config, msg.content["arrays"], train_split.x.shape[1])
    mode = str(config.get("personal", ""))
    if not mode:
        metrics = train_round(model, train_split, config)
    else:
        own = personal.personal_path(Path(os.environ[EXPERIMENT_ENV]), partition)
        sent = msg.content["arrays"].to_torch_state_dict()
        personal.before_train(model, mode, own)
        metrics = train_round(model, train_split, config)
        personal.after_train(model, sent, train_split, config, own)
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Metrics of the global model on this site's validation split; only metrics leave."""
    name, _, test_split = load_site(int(context.node_config["partition-id"]))
    config = msg.content["config"]
    if config["task"] == XGBOOST:
        p = tabular_xgboost.predict(_booster(msg.content["arrays"]), test_split.x)
        metrics = binary.metrics_of(p, test_split.y)
    else:
        model = _model(config, msg.content["arrays"], test_split.x.shape[1])
        metrics = binary.evaluate(model, test_split)
    content = RecordDict(
        {
            "metrics": MetricRecord(metrics),
            "site": ConfigRecord({"name": name}),
        }
    )
    return Message(content=content, reply_to=msg)
