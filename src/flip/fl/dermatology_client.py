"""The ClientApp of the dermatology task: each site checks the task's hash against its own
ledger's approvals before it reads one row, then trains or evaluates the model the server
names (`model`: biomarker or response) and sends back only the trainable arrays (LoRA
adapters, heads and the photograph network; never the frozen MiniLM weights, never rows).
When the task names pretrained weights of the photograph network, each site starts it from
its own registered copy in round 1 (hash-checked like MiniLM's).

The site is found as for every FLIP ClientApp (`flip.fl.client.site_of`); its source codes
for the task are in CODES_FILE beside its ledger; the MiniLM weights the task names are the
site's registered copy, hash-checked before use (`flip.data.pretrained.resolve`). Before
round 1 the server asks each site for the sums and counts of its training features (a
query), and sends the scaling they give with every later message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flip.config import SiteConfig
from flip.data.features.adapter import Weights
from flip.data.features.tabular import Scaling
from flip.data.ledger import Ledger
from flip.data.pretrained import PretrainedError, resolve
from flip.fl.client import approved, refuse, require_rows, rounded_sizes, site_of
from flip.fl.preprocessing import feature_stats
from flip.fl.tasks.dermatology import Adaptable, new_model, start_image
from flip.fl.tasks.dermatology_data import (
    SiteData,
    load_codes,
    response_table,
    scaled,
    site_data,
)
from flip.fl.tasks.dermatology_task import DermatologyTask, Model
from flip.fl.tasks.dermatology_training import Split, fit, predict
from flip.fl.tasks.outcomes import auroc

app = ClientApp()


def authorise(site: SiteConfig, config: Mapping[str, Any]) -> DermatologyTask:
    """The task to run, once it hashes to the hash named and the site's ledger approves it
    for the project; a refusal is audited in the ledger and raised (`NotApproved`)."""
    task = DermatologyTask.model_validate_json(str(config["task"]))
    project, digest = str(config["project"]), task.sha256()
    with Ledger(site.ledger) as ledger:
        reason = None
        if digest != config["task-hash"]:
            reason = "the task sent does not hash to the hash named"
        elif not approved(ledger, project, digest):
            reason = "the site has not approved this task for this project"
        if reason:
            refuse(ledger, site, {"project": project, "task_hash": digest}, reason)
    return task


def count_round(
    site: SiteConfig,
    task: DermatologyTask,
    config: Mapping[str, Any],
    run: int,
    kind: Literal["train", "evaluate"],
) -> int:
    """Count one more round of `kind` of the model `config` names in Flower run `run`, in the
    site's ledger, before any row is read: a run trains each model at most the task's rounds
    and evaluates it at most once more, whatever round number the server sends; beyond that
    the round is refused (audited)."""
    project, digest, model = str(config["project"]), str(config["task-hash"]), config["model"]
    limit = task.rounds if kind == "train" else task.rounds + 1
    with Ledger(site.ledger) as ledger:
        number = ledger.count_round(f"{run}:{model}", project, digest, limit, kind=kind)
        if number is None:
            done = "trained" if kind == "train" else "evaluated"
            reason = f"run {run} has already {done} the {limit} rounds approved of {model}"
            refuse(ledger, site, {"project": project, "task_hash": digest}, reason)
    return number


@lru_cache(maxsize=16)
def _read(store: str, folder: str, task_json: str) -> SiteData:
    task = DermatologyTask.model_validate_json(task_json)
    return site_data(store, load_codes(Path(folder)), task)


def rows(site: SiteConfig, task: DermatologyTask) -> SiteData:
    """The site's rows for the task (read once per process; call only once authorised)."""
    return _read(site.store, str(Path(site.ledger).parent), task.model_dump_json())


def site_weights(site: SiteConfig, weights: Weights, config: Mapping[str, Any]) -> Path:
    """The site's local path of the pretrained `weights` the task names, once they hash to the
    task's SHA-256; otherwise the run is refused (audited)."""
    with Ledger(site.ledger) as ledger:
        try:
            return resolve(ledger, weights.name, weights.sha256)
        except PretrainedError as exc:
            detail = {"project": str(config["project"]), "task_hash": str(config["task-hash"])}
            refuse(ledger, site, detail, str(exc))


def text_base(site: SiteConfig, task: DermatologyTask, config: Mapping[str, Any]) -> Path | None:
    """The site's checked copy of the MiniLM weights the task names (`site_weights`); None:
    no LoRA in the task."""
    adapter = task.text.adapter
    return None if adapter is None else site_weights(site, adapter.weights, config)


@lru_cache(maxsize=4)
def _model(task_json: str, model: Model, base: str | None) -> Adaptable:
    task = DermatologyTask.model_validate_json(task_json)
    recipe = task.recipe(model)
    adapter = task.text.adapter if recipe.n_text else None
    return new_model(
        recipe.n_features, recipe.n_text, recipe.image, task.seed, adapter, base and Path(base)
    )


def site_model(
    task: DermatologyTask, model: Model, base: Path | None, state: Mapping[str, Any]
) -> Adaptable:
    """The model with the server's trainable arrays `state` on the site's frozen encoder (the
    encoder is loaded once per process and weights path)."""
    found = _model(task.model_dump_json(), model, None if base is None else str(base))
    found.load_state_dict(dict(state))
    return found


def _split(data: SiteData, model: Model, which: str, config: Mapping[str, Any]) -> Split:
    split = data.split(model, which)
    if model == "response":
        split = scaled(split, Scaling.model_validate_json(str(config["scaling"])))
    return split


def _enough(site: SiteConfig, config: Mapping[str, Any], split: Split, which: str) -> Split:
    """The split, if it holds at least the site's fewest rows (`require_rows`)."""
    require_rows(site, config, which, len(split))
    return split


def train_round(
    site: SiteConfig, config: Mapping[str, Any], state: Mapping[str, Any], run: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """One round of local training of the model `config` names from the global `state`, on
    the site's training rows once the task is authorised and the round counted (`count_round`);
    the trained arrays and metrics."""
    task = authorise(site, config)
    count_round(site, task, config, run, "train")
    model_name: Model = str(config["model"])  # type: ignore[assignment]
    base = text_base(site, task, config)
    number = int(config["server-round"])
    # Round 1 starts the photograph network from the site's own pretrained copy (the same
    # bytes at every site: the task pins their SHA-256); later rounds from the aggregate.
    image = task.image_weights if number == 1 else None
    image_base = None if image is None else site_weights(site, image, config)
    split = _enough(site, config, _split(rows(site, task), model_name, "train", config), "training")
    model = site_model(task, model_name, base, state)
    if image is not None and image_base is not None:
        try:
            start_image(model, image_base, image.sha256)
        except PretrainedError as exc:
            with Ledger(site.ledger) as ledger:
                detail = {"project": str(config["project"]), "task_hash": str(config["task-hash"])}
                refuse(ledger, site, detail, str(exc))
    done = (number - 1) * task.local_epochs  # epochs of the schedule before this round's
    fit(model, task.recipe(model_name), split, task.local_epochs, task.seed * 1000 + number, done)
    with Ledger(site.ledger) as ledger:
        ledger.record(
            "run.trained",
            {
                "project": str(config["project"]),
                "task_hash": str(config["task-hash"]),
                "model": model_name,
                "round": number,
                "n_train": len(split),
            },
        )
    return dict(model.state_dict()), rounded_sizes(site, {"num-examples": len(split)})


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training on the site's training rows (`train_round`)."""
    state = msg.content["arrays"].to_torch_state_dict()
    config = msg.content["config"]
    trained, metrics = train_round(site_of(context), config, state, msg.metadata.run_id)
    content = RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The global model's error on the site's test rows, for the federation's learning curve:
    its sum and count (biomarker: absolute PASI error; response: AUROC times the rows, when
    both classes are there), so the server's average of them is the rows' mean."""
    site = site_of(context)
    config = msg.content["config"]
    task = authorise(site, config)
    count_round(site, task, config, msg.metadata.run_id, "evaluate")
    model_name: Model = str(config["model"])  # type: ignore[assignment]
    base = text_base(site, task, config)
    split = _enough(site, config, _split(rows(site, task), model_name, "test", config), "test")
    model = site_model(task, model_name, base, msg.content["arrays"].to_torch_state_dict())
    predicted = predict(model, task.recipe(model_name), split)
    if model_name == "biomarker":
        total, n = float(np.abs(predicted - split.y).sum()), len(split)
    else:
        score = auroc(split.y, predicted) if len(split) else float("nan")
        total, n = (score * len(split), len(split)) if math.isfinite(score) else (0.0, 0)
    metrics = {"score-sum": total, "score-n": float(n), "num-examples": 1}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


@app.query()
def stats(msg: Message, context: Context) -> Message:
    """Sums and counts of the site's training baseline features (response model), never rows;
    a feature that would count fewer persons than the site's fewest rows is withheld."""
    site = site_of(context)
    config = msg.content["config"]
    task = authorise(site, config)
    train_split = rows(site, task).split("response", "train")
    table = response_table(train_split)
    shared = feature_stats(table, len(task.features), site.policy.fewest_rows())
    return Message(content=RecordDict({"stats": MetricRecord(shared)}), reply_to=msg)
