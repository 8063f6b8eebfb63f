"""The ClientApp every site runs: it checks the site's own approval before it reads one row.

A site is found from the node's config: `site-config` (a path to site.yaml) in
deployment, or the partition id indexing FLIP_SIM_SITES (a JSON list of such
paths) in simulation. For a task with federated scaling, the server first sends
a query: each site answers with the sums and counts of its training features
(never rows), and every later message carries the scaling computed from them.
A site holds out a share of its training split as a validation split: the rounds
are evaluated on it (the server picks its best round by it); the test split answers
only the final evaluation, which says so in its config (`evaluate-split`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from flip.config import SiteConfig
from flip.data.features.tabular import Scaling, TabularData
from flip.data.ledger import Ledger, LedgerTampered
from flip.fl.preprocessing import feature_stats
from flip.fl.privacy import clip_when_asked
from flip.fl.splits import EVALUATE_SPLIT, VALIDATION_FRACTION
from flip.fl.tasks import binary
from flip.fl.tasks.base import TaskSpec, load_raw_splits, task_hash
from flip.fl.tasks.models import new_model
from flip.site.policy import rows_problem, task_problem

SIM_SITES_ENV = "FLIP_SIM_SITES"

app = ClientApp(mods=[clip_when_asked])


class NotApproved(PermissionError):
    """The site has not approved this (project, task hash), or its policy forbids the task."""


def site_of(context: Context) -> SiteConfig:
    """The site this node serves."""
    node = context.node_config
    if "site-config" in node:
        return SiteConfig.load(Path(str(node["site-config"])))
    paths = json.loads(os.environ.get(SIM_SITES_ENV, "[]"))
    partition = int(node.get("partition-id", -1))
    if not 0 <= partition < len(paths):
        raise RuntimeError(f"node has no site: set site-config or {SIM_SITES_ENV}")
    return SiteConfig.load(Path(paths[partition]))


def authorise(site: SiteConfig, config: Mapping[str, Any], *, secure: bool = False) -> TaskSpec:
    """The task to run, once the site's ledger and policy allow it; refusals are audited.

    `secure` says whether this ClientApp masks its updates (SecAgg+): a task that asks
    for secure aggregation runs only there, and only such a task runs there.
    """
    spec = TaskSpec.model_validate_json(str(config["task"]))
    project = str(config["project"])
    digest = task_hash(spec)
    with Ledger(site.ledger) as ledger:
        reason = None
        if digest != config["task-hash"]:
            reason = "the task sent does not hash to the hash named"
        elif spec.secure_aggregation != secure:
            reason = (
                "the task must run under secure aggregation, and this run is not"
                if spec.secure_aggregation
                else "the task did not ask for secure aggregation"
            )
        elif problem := task_problem(site.policy, project, spec):
            reason = problem
        elif not _approved(ledger, project, digest):
            reason = "the site has not approved this task for this project"
        elif spec.rounds is not None and int(config.get("server-round", 0)) > spec.rounds:
            reason = f"round {config['server-round']} is beyond the {spec.rounds} rounds approved"
        if reason:
            _refuse(ledger, site, {"project": project, "task_hash": digest}, reason)
        return spec


def _approved(ledger: Ledger, project: str, digest: str) -> bool:
    """Whether the ledger approves the task; a tampered ledger is refused with its reason."""
    try:
        return ledger.is_approved(project, digest)
    except LedgerTampered as exc:
        ledger.record("run.refused", {"project": project, "task_hash": digest, "reason": str(exc)})
        raise NotApproved(str(exc)) from exc


def _refuse(ledger: Ledger, site: SiteConfig, detail: dict[str, str], reason: str) -> NoReturn:
    """Record the refusal in the site's ledger and raise it."""
    ledger.record("run.refused", {**detail, "reason": reason})
    raise NotApproved(f"{site.name}: {reason}")


@lru_cache(maxsize=256)
def _raw_splits(store: str, spec_json: str) -> tuple[TabularData, TabularData]:
    return load_raw_splits(store, TaskSpec.model_validate_json(spec_json))


@lru_cache(maxsize=256)
def _scaled_splits(
    store: str, spec_json: str, scaling_json: str
) -> tuple[TabularData, TabularData]:
    scaling = Scaling.model_validate_json(scaling_json)
    return tuple(scaling.apply(split) for split in _raw_splits(store, spec_json))


@lru_cache(maxsize=256)
def _fit_and_validation(
    store: str, spec_json: str, scaling_json: str
) -> tuple[TabularData, TabularData]:
    train, _ = _scaled_splits(store, spec_json, scaling_json)
    seed = TaskSpec.model_validate_json(spec_json).seed
    return train.split(VALIDATION_FRACTION, seed)


def scaling_for(spec: TaskSpec, config: Mapping[str, Any]) -> Scaling:
    """The scaling every site of the run uses: the spec's fixed one, or the federation's,
    which the server sends in the config."""
    if spec.data.scaling == "fixed":
        return Scaling.of_spec(spec.data)
    if "scaling" not in config:
        raise ValueError("the run sent no scaling, and this task's scaling is federated")
    return Scaling.model_validate_json(str(config["scaling"]))


@lru_cache(maxsize=256)
def data_fingerprint(store: str, spec_json: str) -> str:
    """SHA-256 of the task's dataset at this site as extracted (features and outcome of
    both splits): the data snapshot a model was trained and tested on."""
    digest = hashlib.sha256()
    for split in _raw_splits(store, spec_json):
        digest.update(np.ascontiguousarray(split.x).tobytes())
        digest.update(np.ascontiguousarray(split.y).tobytes())
    return digest.hexdigest()


def _splits(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    usable_splits(site, spec, config)
    scaling = scaling_for(spec, config)
    return _scaled_splits(site.store, spec.model_dump_json(), scaling.model_dump_json())


def fit_and_validation(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    """The rows the site trains on and its validation split: a stratified share of its
    training split, the same for the same data and seed."""
    usable_splits(site, spec, config)
    scaling = scaling_for(spec, config)
    return _fit_and_validation(site.store, spec.model_dump_json(), scaling.model_dump_json())


def usable_splits(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    """The task's unscaled training and test splits at this site, once each has at least the
    policy's fewest rows (whatever the task's test fraction); a refusal is audited."""
    splits = _raw_splits(site.store, spec.model_dump_json())
    for name, split in zip(("training", "test"), splits, strict=True):
        if problem := rows_problem(site.policy, name, len(split.y)):
            with Ledger(site.ledger) as ledger:
                _refuse(ledger, site, _detail(config), problem)
    return splits


def _detail(config: Mapping[str, Any]) -> dict[str, str]:
    return {"project": str(config["project"]), "task_hash": str(config["task-hash"])}


def share_stats(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> dict[str, list[float]]:
    """Sums and counts of the site's training features, for the federation's scaling; the
    release is audited, refused below the site's fewest rows, and a feature whose sums
    would count fewer persons than that is withheld."""
    train, _ = usable_splits(site, spec, config)
    with Ledger(site.ledger) as ledger:
        ledger.record("run.stats", {**_detail(config), "n_train": len(train.y)})
    return feature_stats(train, len(spec.data.features), site.policy.fewest_rows())


def _model(spec: TaskSpec, state: dict[str, Any]) -> torch.nn.Module:
    return binary.load_arrays(new_model(spec), state)


def train_round(
    site: SiteConfig,
    spec: TaskSpec,
    config: Mapping[str, Any],
    state: dict[str, Any],
    *,
    run: int,
) -> tuple[torch.nn.Module, dict[str, float]]:
    """One round of local training of an authorised task from the global `state` in Flower
    run `run`, logged in the site's ledger (with the norm its update is clipped to, under
    client-side differential privacy); the trained model and its metrics.

    The site counts the rounds each run trained in its ledger and refuses one more than
    the task has, whatever round number the server sends.
    """
    train_split, _ = fit_and_validation(site, spec, config)
    detail = _detail(config)
    with Ledger(site.ledger) as ledger:
        number = ledger.count_round(str(run), detail["project"], detail["task_hash"], spec.rounds)
        if number is None:
            reason = f"run {run} has already trained the {spec.rounds} rounds the task has"
            _refuse(ledger, site, detail, reason)
    model = _model(spec, state)
    metrics = binary.train(
        model,
        train_split,
        epochs=spec.local_epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        l2=spec.l2,
        seed=spec.seed * 1000 + int(config.get("server-round", 0)),
    )
    with Ledger(site.ledger) as ledger:
        ledger.record(
            "run.trained",
            {
                **detail,
                "round": int(config.get("server-round", 0)),
                "flower_run": run,
                "site_round": number,
                "n_train": len(train_split.y),
                "loss": round(float(metrics["loss"]), 6),
                **(
                    {"clipping_norm": float(config[KEY_CLIPPING_NORM])}
                    if KEY_CLIPPING_NORM in config
                    else {}
                ),
            },
        )
    return model, metrics


def evaluate_round(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any], state: dict[str, Any]
) -> dict[str, float]:
    """Metrics of the global `state` on the site's test split when the config asks for it
    (the final evaluation), on its validation split otherwise (a round's); a validation
    split under the policy's fewest rows is refused, as a test split is."""
    if config.get(EVALUATE_SPLIT) == "test":
        _, split = _splits(site, spec, config)
    else:
        _, split = fit_and_validation(site, spec, config)
        if problem := rows_problem(site.policy, "validation", len(split.y)):
            with Ledger(site.ledger) as ledger:
                _refuse(ledger, site, _detail(config), problem)
    return binary.evaluate(_model(spec, state), split)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training on the site's training split."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config)
    state = msg.content["arrays"].to_torch_state_dict()
    model, metrics = train_round(site, spec, config, state, run=context.run_id)
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the site's test split; only metrics leave, with the
    site's training rows and data fingerprint."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config)
    metrics = evaluate_round(site, spec, config, msg.content["arrays"].to_torch_state_dict())
    about = {"name": site.name, **report_evaluation(site, spec, config, metrics)}
    content = RecordDict({"metrics": MetricRecord(metrics), "site": ConfigRecord(about)})
    return Message(content=content, reply_to=msg)


def report_evaluation(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any], metrics: Mapping[str, float]
) -> dict[str, int | str]:
    """The site's training rows and data fingerprint, sent with its evaluation's metrics and
    audited with them as `run.evaluated` (what the site countersigns a certificate by)."""
    reported: dict[str, int | str] = {
        "n_train": len(usable_splits(site, spec, config)[0].y),
        "data_sha256": data_fingerprint(site.store, spec.model_dump_json()),
    }
    with Ledger(site.ledger) as ledger:
        ledger.record(
            "run.evaluated",
            {**_detail(config), **reported, "n_test": int(metrics["num-examples"])},
        )
    return reported


@app.query()
def stats(msg: Message, context: Context) -> Message:
    """Sums and counts of the site's training features for federated scaling; no rows."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config)
    content = RecordDict({"stats": MetricRecord(share_stats(site, spec, config))})
    return Message(content=content, reply_to=msg)
