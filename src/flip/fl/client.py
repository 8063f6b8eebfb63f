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
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flip.config import SiteConfig
from flip.data.cohort.disclosure import rounded
from flip.data.cohort.sizes import release_sizes
from flip.data.features.tabular import Scaling, TabularData
from flip.data.ledger import Ledger, LedgerTampered
from flip.data.pretrained import PretrainedError, resolve
from flip.fl import personal, replay, site_personal
from flip.fl.carried import EVALUATE_RECEIVED, EVALUATED
from flip.fl.preprocessing import feature_stats
from flip.fl.privacy import (
    UpdateRefused,
    accounting_problem,
    delta_problem,
    gaussian_epsilon,
    server_config_problem,
)
from flip.fl.private_fit import LocalSettings, private_fit
from flip.fl.received import received_problem
from flip.fl.runtime.flower import HUB_RUNS_ONLY
from flip.fl.server import HUB_RUN
from flip.fl.split_cache import cached_splits
from flip.fl.splits import EVALUATE_SPLIT, VALIDATION_FRACTION
from flip.fl.tasks import outcomes
from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.binary import load_arrays
from flip.fl.tasks.models import new_model
from flip.fl.tasks.runner import evaluate_task, train_task
from flip.fl.tasks.sandbox import Limits, SandboxRefused
from flip.fl.tasks.training import choose_device
from flip.site.policy import rows_problem, task_problem

SIM_SITES_ENV = "FLIP_SIM_SITES"

app = ClientApp()


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


def hub_runs_only(context: Context) -> bool:
    """Whether this node serves only hub runs its site joined (the site agent's SuperNode)."""
    return bool(context.node_config.get(HUB_RUNS_ONLY, False))


def authorise(
    site: SiteConfig, config: Mapping[str, Any], *, secure: bool = False, hub_runs: bool = False
) -> TaskSpec:
    """The task to run, once the site's ledger and policy allow it; refusals are audited.

    `secure` says whether this ClientApp masks its updates (SecAgg+): a task that asks
    for secure aggregation runs only there, and only such a task runs there. With
    `hub_runs` the message must name a hub run of this task that the site joined.
    """
    spec = _named_task(site, config)
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
        elif not approved(ledger, project, digest):
            reason = "the site has not approved this task for this project"
        elif hub_runs and _joined(ledger, config, project, digest) is None:
            reason = f"the site has not joined the hub run this names ({config.get(HUB_RUN)})"
        elif problem := round_problem(spec, config):
            reason = problem
        if reason:
            refuse(ledger, site, {"project": project, "task_hash": digest}, reason)
        return spec


def _named_task(site: SiteConfig, config: Mapping[str, Any]) -> TaskSpec:
    """The task the message names, once it names a project, a task spec, a hash and (if
    any) a hub run by number; otherwise an audited refusal naming what is wrong."""
    missing = [k for k in ("project", "task", "task-hash") if k not in config]
    run = config.get(HUB_RUN, 0)
    if not missing and (isinstance(run, bool) or not isinstance(run, int)):
        missing = [HUB_RUN]
    wrong = f"{', '.join(missing)}: missing or not valid"
    if not missing:
        try:
            return TaskSpec.model_validate_json(str(config["task"]))
        except ValueError:  # pydantic's ValidationError
            wrong = "task: not a task spec"
    detail = {"project": str(config.get("project")), "task_hash": str(config.get("task-hash"))}
    with Ledger(site.ledger) as ledger:
        refuse(ledger, site, detail, f"the message names no valid task ({wrong})")


def _joined(
    ledger: Ledger, config: Mapping[str, Any], project: str, digest: str
) -> dict[str, object] | None:
    """The site's record of joining the hub run `config` names, or None (none named, or not
    joined)."""
    if HUB_RUN not in config:
        return None
    return ledger.joined_run(int(config[HUB_RUN]), project, digest)


def round_count(
    ledger: Ledger, spec: TaskSpec, config: Mapping[str, Any], run: int
) -> tuple[str, int | None]:
    """Which count a trained round goes to, and the most rounds that count may reach.

    A hub run's rounds are counted together, whichever Flower run carries them, up to the
    task's rounds and the rounds the hub run had when the site joined it; elsewhere
    (simulation, a loopback deployment) Flower run `run`'s, up to the task's.
    """
    if HUB_RUN not in config:
        return str(run), spec.rounds
    joined = _joined(ledger, config, str(config["project"]), str(config["task-hash"])) or {}
    limits = [n for n in (spec.rounds, joined.get("rounds")) if n is not None]
    return f"hub-{int(config[HUB_RUN])}", min((int(n) for n in limits), default=None)


def round_problem(spec: TaskSpec, config: Mapping[str, Any]) -> str | None:
    """Why the round the server names is refused (missing, not a number, or beyond the
    approved rounds), or None; 0 is the queries before round 1."""
    sent = config.get("server-round")
    if isinstance(sent, bool) or not isinstance(sent, int):
        return "the server named no round number (server-round)"
    if sent < 0 or (spec.rounds is not None and sent > spec.rounds):
        return f"round {sent} is beyond the {spec.rounds} rounds approved"
    return None


def _counted_run(counter: str, config: Mapping[str, Any], run: int) -> str:
    """The run a round count belongs to, in words: a hub run, or the Flower run `run`."""
    return counter.replace("hub-", "hub run ") if HUB_RUN in config else f"run {run}"


def approved(ledger: Ledger, project: str, digest: str) -> bool:
    """Whether the ledger approves the task; a tampered ledger is refused with its reason."""
    with _untampered(ledger, project, digest):
        return ledger.is_approved(project, digest)


@contextmanager
def _untampered(ledger: Ledger, project: str, digest: str) -> Iterator[None]:
    """Turn a broken ledger chain met inside into an audited refusal of the task."""
    try:
        yield
    except LedgerTampered as exc:
        ledger.record("run.refused", {"project": project, "task_hash": digest, "reason": str(exc)})
        raise NotApproved(str(exc)) from exc


def refuse(ledger: Ledger, site: SiteConfig, detail: dict[str, str], reason: str) -> NoReturn:
    """Record the refusal in the site's ledger and raise it."""
    ledger.record("run.refused", {**detail, "reason": reason})
    raise NotApproved(f"{site.name}: {reason}")


@lru_cache(maxsize=256)
def _extracted(store: str, spec_json: str) -> tuple[tuple[TabularData, TabularData], str]:
    return cached_splits(store, TaskSpec.model_validate_json(spec_json))


def _raw_splits(store: str, spec_json: str) -> tuple[TabularData, TabularData]:
    return _extracted(store, spec_json)[0]


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


def scaling_for(site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]) -> Scaling:
    """The scaling every site of the run uses: the spec's fixed one, or the federation's,
    which the server sends in the config; one that is missing, or is not a finite centre
    and a positive finite scale for each of the task's features, is refused (audited)."""
    if spec.data.scaling == "fixed":
        return Scaling.of_spec(spec.data)
    n = len(spec.data.features)
    try:
        sent = Scaling.model_validate_json(str(config["scaling"])) if "scaling" in config else None
    except ValueError:  # pydantic's ValidationError: not a scaling at all
        sent = None
    if sent is not None and len(sent.center) == n and math.isfinite(sum(sent.center + sent.scale)):
        return sent
    reason = (
        "the run sent no scaling, and this task's scaling is federated"
        if "scaling" not in config
        else f"the server's scaling is not a finite centre and scale > 0 for each of {n} features"
    )
    with Ledger(site.ledger) as ledger:
        refuse(ledger, site, _detail(config), reason)


def data_fingerprint(store: str, spec_json: str) -> str:
    """SHA-256 of the task's dataset at this site as extracted (features and outcome of
    both splits): the data snapshot a model was trained and tested on."""
    return _extracted(store, spec_json)[1]


def _splits(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    usable_splits(site, spec, config)
    scaling = scaling_for(site, spec, config)
    return _scaled_splits(site.store, spec.model_dump_json(), scaling.model_dump_json())


def fit_and_validation(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    """The rows the site trains on and its validation split: a stratified share of its
    training split, the same for the same data and seed."""
    usable_splits(site, spec, config)
    scaling = scaling_for(site, spec, config)
    return _fit_and_validation(site.store, spec.model_dump_json(), scaling.model_dump_json())


def usable_splits(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> tuple[TabularData, TabularData]:
    """The task's unscaled training and test splits at this site, once each has at least the
    policy's fewest rows (whatever the task's test fraction); a refusal is audited."""
    splits = _raw_splits(site.store, spec.model_dump_json())
    for name, split in zip(("training", "test"), splits, strict=True):
        require_rows(site, config, name, len(split.y))
    return splits


def require_rows(site: SiteConfig, config: Mapping[str, Any], split: str, rows: int) -> None:
    """Refuse (audited) a round on a `split` of fewer rows than the site's policy allows,
    whatever the task asks: one round's update on a few rows gives those rows away."""
    if problem := rows_problem(site.policy, split, rows):
        with Ledger(site.ledger) as ledger:
            refuse(ledger, site, _detail(config), problem)


def _detail(config: Mapping[str, Any]) -> dict[str, str]:
    return {"project": str(config["project"]), "task_hash": str(config["task-hash"])}


def _hub_run(config: Mapping[str, Any]) -> dict[str, int]:
    """The hub run the config names, as a ledger entry's `run`; nothing outside the hub."""
    return {"run": int(config[HUB_RUN])} if HUB_RUN in config else {}


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


def site_bases(site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]) -> dict[str, Path]:
    """The local paths of the task's pretrained weights, each registered at this site and
    hashing to what the task names; otherwise the run is refused (audited) with the reason."""
    bases: dict[str, Path] = {}
    if not spec.adapters:
        return bases
    with Ledger(site.ledger) as ledger:
        for adapter in spec.adapters:
            name, sha256 = adapter.weights.name, adapter.weights.sha256
            try:
                bases[name] = resolve(ledger, name, sha256)
            except PretrainedError as exc:
                refuse(ledger, site, _detail(config), str(exc))
    return bases


def site_device(site: SiteConfig) -> torch.device:
    """The device this site trains on (its `device` setting; auto: a GPU if present)."""
    return choose_device(site.device)


def site_limits(site: SiteConfig) -> Limits:
    """The limits the site's policy sets on a custom task's process, and the site's folders
    (store, ledger, credential) hidden from it."""
    files = [site.store, site.ledger, site.credential]
    folders = tuple(sorted({str(Path(f).resolve().parent) for f in files if "://" not in f}))
    policy = site.policy
    return Limits(policy.custom_seconds, policy.custom_memory_mb, folders, policy.custom_unconfined)


def train_round(
    site: SiteConfig,
    spec: TaskSpec,
    config: Mapping[str, Any],
    state: dict[str, Any],
    *,
    run: int,
    own: Own | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One round of local training of an authorised task from the global `state` in Flower
    run `run`, logged in the site's ledger with the epsilon spent; the trained state dict
    (under local DP, its update clipped and noised with the approved parameters) and its
    metrics. A custom task's code runs in the sandbox, within the site's limits.

    Under central DP the site refuses a server that says it runs another privacy spec or
    strategy than the approved task's; whatever the privacy, weights that cannot be the
    task's model's are refused before anything is counted (`received_problem`), and a custom
    task stopped in its sandbox is an audited refusal. The site counts the rounds each hub
    run (or, outside the hub, each Flower run) trained in its ledger and refuses one more
    than approved, whatever round number the server sends and however many Flower runs carry
    the hub run (`round_count`); under DP it refuses a delta of 1 / its training rows or
    more, and a round that would take the site's epsilon past the policy's `max_epsilon`
    across all runs, tasks and projects, whatever persons they read. Under DP the metrics
    that leave are `num-examples` = 1 only (equal weights; no loss, no count, no custom
    metric); under local DP an update that is not finite floating point is refused, never
    sent.

    A personalised task (`spec.personal`) trains from the global state with the site's own
    layers in `own` and keeps its new own part there (Ditto: its own model, trained after
    the global one), and in the site's file of it (`site_personal.save`), whose digest the
    `run.trained` entry records as `own`; what it sends carries its own layers as it
    received them. A round (not a replay) of a run that had its final evaluation, or of a
    personalised task at or before the last round the site trained in the run, is refused
    (`moved_on`): the site never trains its own layers on from a later round than the
    server's.
    """
    bases = site_bases(site, spec, config)
    detail = _detail(config)
    weights_in = replay.weights_digest(state)
    with Ledger(site.ledger) as ledger:
        if problem := server_config_problem(spec.privacy, config, spec.strategy.name):
            refuse(ledger, site, detail, problem)
        if problem := received_problem(spec, state):
            refuse(ledger, site, detail, problem)
        counter, limit = round_count(ledger, spec, config, run)
        if (answer := _replayed(ledger, site, counter, config, weights_in)) is not None:
            return answer
        if problem := moved_on(ledger, spec, counter, config, run, trains=True):
            refuse(ledger, site, detail, problem)
    train_split, _ = fit_and_validation(site, spec, config)
    n_train = len(train_split.y)
    with Ledger(site.ledger) as ledger:
        if problem := _dp_problem(spec, n_train):
            refuse(ledger, site, detail, problem)
        number = _counted(ledger, counter, detail["project"], detail["task_hash"], limit)
        if number is None:
            which = _counted_run(counter, config, run)
            reason = (
                f"{which} has already trained the {limit} rounds approved (a round sent again "
                "from other weights than the site trained it from is a new query, so it counts)"
            )
            refuse(ledger, site, detail, reason)
        delta = site.policy.max_delta
        epsilon = site_epsilon(spec, n_train, number, delta)
        spent = _spend(ledger, site, spec, config, counter, epsilon, delta)
    own = (own if own is not None else Own()).of(site_personal.about(config, counter))
    server_round = int(config["server-round"])
    try:
        start = site_personal.start_state(spec, state, own.state) if spec.personal else state
        trained, metrics = _fit(site, spec, start, train_split, server_round, bases)
    except (UpdateRefused, PretrainedError, personal.ForeignState, SandboxRefused) as exc:
        with Ledger(site.ledger) as ledger:
            refuse(ledger, site, detail, str(exc))
    own_file: dict[str, str] = {}
    if spec.personal:
        trained, own.state = site_personal.after_round(
            spec,
            trained,
            state,
            own.state,
            train_split,
            seed=spec.seed * 1000 + server_round,
            device=site_device(site),
        )
        own_file["own"] = site_personal.save(site.ledger, str(own.owner), own.state)
    loss = _loss(metrics)
    if spec.privacy is not None:
        metrics = {"num-examples": 1.0}
    kept = replay.keep(
        site.ledger, counter, detail["project"], detail["task_hash"], (trained, metrics)
    )
    with Ledger(site.ledger) as ledger:
        ledger.record(
            "run.trained",
            {
                **detail,
                "round": int(config["server-round"]),
                "flower_run": run,
                **_hub_run(config),
                "counter": counter,
                "site_round": number,
                "n_train": n_train,
                "loss": loss,
                "private": spec.privacy is not None,
                "weights_in": weights_in,
                "answer": kept,
                **own_file,
                **spent,
            },
        )
    if own_file:
        site_personal.prune(site.ledger, str(own.owner), own_file["own"])
    return trained, metrics


@dataclass
class Own:
    """A site's own part of a personalised task, from one round of a run to the next, and
    the task and run it belongs to (`site_personal.about`)."""

    state: dict[str, Any] | None = None
    owner: str | None = None

    def of(self, owner: str) -> Own:
        """This part, emptied first unless it belongs to task and run `owner`: one task's
        part never starts or scores another's."""
        if self.owner != owner:
            self.state, self.owner = None, owner
        return self


def _replayed(
    ledger: Ledger, site: SiteConfig, counter: str, config: Mapping[str, Any], weights_in: str
) -> tuple[dict[str, Any], dict[str, float]] | None:
    """The site's kept answer when the server sends the run's last trained round again from
    the same weights (a hub resumed after a crash), audited as `run.replayed`; else None.
    See `flip.fl.replay`: no row is read, no round counted, no epsilon spent."""
    detail = _detail(config)
    project, digest = detail["project"], detail["task_hash"]
    last = _last_trained(ledger, counter, project, digest)
    if last is None or last.get("round") != config["server-round"]:
        return None
    if last.get("weights_in") != weights_in:
        return None
    answer = replay.kept(site.ledger, counter, project, digest, str(last.get("answer")))
    if answer is not None:
        ledger.record(
            "run.replayed",
            {**detail, "round": last["round"], **_hub_run(config), "counter": counter},
        )
    return answer


def moved_on(
    ledger: Ledger,
    spec: TaskSpec,
    counter: str,
    config: Mapping[str, Any],
    run: int,
    *,
    trains: bool,
) -> str | None:
    """Why a round of run `counter` (not a replay) comes after the site moved past it: the run
    had its final evaluation (it is over, whoever names it again), or, for a personalised task,
    the site already trained this round (`trains`) or a later one, so its own layers are ahead
    of the server's (a checkpoint older than the site's last round); None otherwise."""
    detail = _detail(config)
    project, digest = detail["project"], detail["task_hash"]
    which = _counted_run(counter, config, run)
    with _untampered(ledger, project, digest):
        entries = ledger.chained(frozenset({_RELEASED[True], "run.trained"}))
    ours = [(action, e) for action, e in entries if _about(e) == (counter, project, digest)]
    if any(action == _RELEASED[True] for action, _ in ours):
        return f"{which} is over: the site has answered its final evaluation (the test split)"
    last = ours[-1][1] if ours and spec.personal else None
    if last is None:
        return None
    sent, done = int(config["server-round"]), int(last["round"])
    if done > sent or (trains and done == sent):
        return (
            f"round {sent} of {which} is behind round {done}, which the site trained last: its "
            "own layers are ahead of the server's checkpoint, and the site does not roll them back"
        )
    return None


def _about(entry: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The round counter, project and task hash a ledger entry of a run's round names."""
    return entry.get("counter"), entry.get("project"), entry.get("task_hash")


def _last_trained(ledger: Ledger, counter: str, project: str, digest: str) -> dict[str, Any] | None:
    """The ledger's last `run.trained` entry of the task in run `counter`, or None; a
    tampered ledger is refused."""
    with _untampered(ledger, project, digest):
        trained = ledger.chained(frozenset({"run.trained"}))
    about = (counter, project, digest)
    return next((d for _, d in reversed(trained) if _about(d) == about), None)


def _loss(metrics: Mapping[str, float]) -> float | None:
    """The round's training loss as the site's audit keeps it (None when not finite)."""
    loss = float(metrics.get("loss", float("nan")))
    return round(loss, 6) if math.isfinite(loss) else None


def _counted(
    ledger: Ledger,
    counter: str,
    project: str,
    digest: str,
    limit: int | None,
    kind: Literal["train", "evaluate"] = "train",
) -> int | None:
    """`Ledger.count_round`, with a tampered ledger refused as `approved` refuses it."""
    with _untampered(ledger, project, digest):
        return ledger.count_round(counter, project, digest, limit, kind=kind)


def _fit(
    site: SiteConfig,
    spec: TaskSpec,
    state: dict[str, Any],
    split: TabularData,
    server_round: int,
    bases: Mapping[str, Path] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Local training as the task says (`private_fit`): DP-SGD (Opacus) under record-level
    DP, else the task's own loop (`train_task`: the outcome's loss, FedProx, a custom task's
    sandbox), its update clipped and noised with the approved parameters under local DP
    (a personalised task's own layers, never sent, left out)."""
    settings = LocalSettings(spec.local_epochs, spec.learning_rate, spec.batch_size, spec.l2)
    own = personal.own_keys(new_model(spec, bases), spec.personal) if spec.personal else []
    return private_fit(
        state,
        split,
        spec.privacy,
        settings,
        model=lambda: load_arrays(new_model(spec, bases), state),
        train=lambda: train_task(
            spec,
            state,
            split,
            epochs=spec.local_epochs,
            seed=spec.seed * 1000 + server_round,
            device=site_device(site),
            limits=site_limits(site),
            bases=bases,
        ),
        own=own,
    )


def _dp_problem(spec: TaskSpec, n_train: int) -> str | None:
    """Why the task's DP cannot run on this site's `n_train` rows (its strategy cannot be
    accounted, its delta is too large, or DP-SGD's per-example loss is binary cross-entropy
    only), or None."""
    privacy = spec.privacy
    if privacy is None:
        return None
    if problem := accounting_problem(privacy, spec.strategy.name):
        return problem
    if problem := delta_problem(privacy, n_train):
        return problem
    if privacy.level != "record":
        return None
    if spec.kind == "custom" or spec.data.outcome != "binary":
        return "record-level DP (DP-SGD) trains built-in kinds with a binary outcome only"
    return None


def budget_dataset(site: SiteConfig, spec: TaskSpec) -> str:
    """The persons a task reads at this site (a hash of the sorted ids of its training and
    test splits, kept only in the site's ledger), whatever cohort definition, features,
    outcome or split selects them: named in each charge for the audit, while the budget
    itself is the site's one (`Ledger.spend`)."""
    splits = _raw_splits(site.store, spec.model_dump_json())
    persons = np.unique(np.concatenate([split.person_ids for split in splits]))
    digest = hashlib.sha256(np.asarray(persons, dtype=np.int64).tobytes()).hexdigest()
    return f"persons:{digest[:32]}"


def site_epsilon(spec: TaskSpec, n_train: int, rounds: int, delta: float) -> float | None:
    """The epsilon at `delta` that `rounds` rounds of the task spend at a site of `n_train`
    training rows (site level: the RDP accountant of z; record level: Opacus's over every
    DP-SGD step); None without differential privacy."""
    privacy = spec.privacy
    if privacy is None:
        return None
    if privacy.level == "site":
        return gaussian_epsilon(privacy.noise_multiplier, rounds, delta)
    from flip.fl.dp_sgd import record_epsilon, steps_per_round

    steps = rounds * steps_per_round(n_train, spec.batch_size, spec.local_epochs)
    return record_epsilon(privacy.noise_multiplier, n_train, spec.batch_size, steps, delta)


def _spend(
    ledger: Ledger,
    site: SiteConfig,
    spec: TaskSpec,
    config: Mapping[str, Any],
    run: str,
    epsilon: float | None,
    delta: float,
) -> dict[str, float]:
    """Charge the epsilon (at the policy's `delta`) of `run` (its round counter: a hub run, or
    a Flower run outside the hub) of this task to the site's budget, which every run, task
    and project shares whatever persons it reads; refuse past the site's ceiling."""
    if epsilon is None or spec.privacy is None:
        return {}
    detail = _detail(config)
    project, digest = detail["project"], detail["task_hash"]
    dataset = budget_dataset(site, spec)
    limit = site.policy.max_epsilon
    with _untampered(ledger, project, digest):
        total = ledger.spend(run, project, dataset, digest, epsilon, delta, limit)
        delta_total = ledger.spent_delta()
    if total is None:
        reason = (
            f"this round (run epsilon {epsilon:.2f}) would take the epsilon spent at the site "
            f"across runs, tasks and projects ({ledger.spent():.2f} so far) "
            f"above the site's ceiling {limit}"
        )
        refuse(ledger, site, detail, reason)
    return {
        "epsilon_run": round(epsilon, 6),
        "epsilon_total": round(total, 6),
        "delta": delta,
        "delta_total": delta_total,
    }


def evaluate_round(
    site: SiteConfig,
    spec: TaskSpec,
    config: Mapping[str, Any],
    state: dict[str, Any],
    *,
    run: int,
    own: Own | None = None,
) -> dict[str, float]:
    """Metrics of the global `state` on the site's test split when the config asks for it
    (the final evaluation), on its validation split otherwise (a round's); a validation
    split under the policy's fewest rows is refused, as a test split is.

    Each evaluation queries the site's rows with weights the server chose and releases its
    exact metrics (not noised, not charged to the privacy budget), so the site counts them
    in its chained ledger: per run (as `round_count` counts trained rounds) it refuses more
    than one on the validation split per approved round and more than one on the test split
    (the final evaluation: the test split is never a round's yardstick), and across every
    run (hub or Flower) more than the policy's `max_evaluations` of the task. The test
    split asked again from the same weights, or the validation split in the same round
    from the same weights (a hub resumed after a crash), gets the metrics the site
    released, without reading a row or counting again. `num-examples` is released rounded
    as the site rounds split sizes (`round_counts_to`). Under central DP a server naming other
    privacy than the approved is refused, as in training, and so are weights that cannot be
    the task's model's (`received_problem`); so is a validation of a run that
    had its final evaluation or, for a personalised task, of a round before the last the
    site trained (`moved_on`). A personalised task's metrics
    also carry its personal model's (global `state` with `own`), as `personal_<metric>`,
    except under local DP (`_private_locally`).
    """
    bases = site_bases(site, spec, config)
    test = config.get(EVALUATE_SPLIT) == "test"
    detail = _detail(config)
    project, digest = detail["project"], detail["task_hash"]
    weights_in = replay.weights_digest(state)
    with Ledger(site.ledger) as ledger:
        if problem := server_config_problem(spec.privacy, config, spec.strategy.name):
            refuse(ledger, site, detail, problem)
        if problem := received_problem(spec, state):
            refuse(ledger, site, detail, problem)
        counter, rounds = round_count(ledger, spec, config, run)
        if (released := _released(ledger, counter, config, weights_in, test)) is not None:
            return released
        if not test and (problem := moved_on(ledger, spec, counter, config, run, trains=False)):
            refuse(ledger, site, detail, problem)
    if test:
        _, split = _splits(site, spec, config)
    else:
        _, split = fit_and_validation(site, spec, config)
    with Ledger(site.ledger) as ledger:
        if not test and (problem := rows_problem(site.policy, "validation", len(split.y))):
            refuse(ledger, site, detail, problem)
        cap = site.policy.max_evaluations
        if cap is not None and _evaluations(ledger, project, digest) >= cap:
            reason = f"the task has had the {cap} evaluations the site's policy allows"
            refuse(ledger, site, detail, reason)
        which = _counted_run(counter, config, run)
        if test:
            counted = _counted(ledger, f"{counter}/test", project, digest, 1, kind="evaluate")
            reason = (
                f"{which} has already had its one evaluation on the test split (the final "
                "one; the test split never scores a round)"
            )
        else:
            counted = _counted(ledger, counter, project, digest, rounds, kind="evaluate")
            reason = f"{which} has already had the {rounds} validation evaluations the task allows"
        if counted is None:
            refuse(ledger, site, detail, reason)
    try:
        metrics = evaluate_task(
            spec, state, split, device=site_device(site), limits=site_limits(site), bases=bases
        )
    except (PretrainedError, SandboxRefused) as exc:
        with Ledger(site.ledger) as ledger:
            refuse(ledger, site, detail, str(exc))
    if spec.personal and not _private_locally(spec):
        kept = (own if own is not None else Own()).of(site_personal.about(config, counter)).state
        try:
            metrics |= site_personal.personal_metrics(spec, state, kept, split, site_device(site))
        except personal.ForeignState as exc:
            with Ledger(site.ledger) as ledger:
                refuse(ledger, site, detail, str(exc))
    metrics = rounded_sizes(site, metrics)
    with Ledger(site.ledger) as ledger:
        ledger.record(
            _RELEASED[test],
            {**detail, **_hub_run(config), "counter": counter, "weights_in": weights_in}
            | {"round": config["server-round"], "metrics": metrics},
        )
    return metrics


def _private_locally(spec: TaskSpec) -> bool:
    """Whether the site noises its own update (local DP): its own layers, left out of the
    noise, then train outside the mechanism, so its personal model's metrics stay home."""
    return spec.privacy is not None and spec.privacy.mechanism == "local"


#: The ledger entry of an evaluation's released metrics: of the validation split, of the test.
_RELEASED = {False: "run.validated", True: "run.tested"}


def rounded_sizes(site: SiteConfig, metrics: dict[str, float]) -> dict[str, float]:
    """`metrics` with the example count released as the site releases sizes: rounded to its
    policy's `round_counts_to` (`flip.data.cohort.disclosure.rounded`)."""
    if "num-examples" not in metrics:
        return metrics
    policy = site.policy
    count = rounded(int(metrics["num-examples"]), policy.round_counts_to, policy.min_cell_size)
    return {**metrics, "num-examples": float(count or 0)}


def _released(
    ledger: Ledger, counter: str, config: Mapping[str, Any], weights_in: str, test: bool
) -> dict[str, float] | None:
    """The metrics this run released for weights of digest `weights_in` on the test split,
    or on the validation split in the same round (a hub resumed after a crash sending it
    again), audited as `run.replayed`; None if it released none for them."""
    detail = _detail(config)
    project, digest = detail["project"], detail["task_hash"]
    with _untampered(ledger, project, digest):
        released = ledger.chained(frozenset({_RELEASED[test]}))
    for _, entry in reversed(released):
        about = (entry.get("counter"), entry.get("project"), entry.get("task_hash"))
        same_round = test or entry.get("round") == config["server-round"]
        if about == (counter, project, digest) and entry.get("weights_in") == weights_in:
            if not same_round:
                return None
            split = "test" if test else "validation"
            ledger.record("run.replayed", {**detail, **_hub_run(config), "split": split})
            return {k: float("nan") if v is None else float(v) for k, v in entry["metrics"].items()}
    return None


def _evaluations(ledger: Ledger, project: str, digest: str) -> int:
    """Evaluations of the task across every run; a tampered ledger is refused."""
    with _untampered(ledger, project, digest):
        return ledger.rounds_counted(project, digest, "evaluate")


def _carried(
    site: SiteConfig,
    spec: TaskSpec,
    config: Mapping[str, Any],
    state: dict[str, Any],
    run: int,
    own: Own,
) -> dict[str, float] | None:
    """The validation metrics of the weights received, when the train message asks for them
    (`EVALUATE_RECEIVED`): always the validation split, whatever `evaluate-split` it names;
    under DP, the outcome's metrics with equal weights (no loss, no count), as the train
    reply's. None when not asked, or refused (the refusal is audited; training goes on)."""
    if not config.get(EVALUATE_RECEIVED):
        return None
    validation = {k: v for k, v in config.items() if k != EVALUATE_SPLIT}
    try:
        metrics = evaluate_round(site, spec, validation, state, run=run, own=own)
    except NotApproved:
        return None
    if spec.privacy is not None:
        return {**outcomes.reported(metrics), "num-examples": 1.0}
    return metrics


def _own(site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any], context: Context) -> Own:
    """The site's own part of the task and run the message names, from the node's state, or
    (a restarted SuperNode, a resumed hub run's new Flower run) from the site's file of it
    (`_restored`); empty for any other task or run."""
    with Ledger(site.ledger) as ledger:
        counter, _ = round_count(ledger, spec, config, context.run_id)
        owner = site_personal.about(config, counter)
        state = site_personal.kept(context, owner)
        if state is None and spec.personal:
            state = _restored(ledger, site, config, counter, owner)
    return Own(state, owner)


def _restored(
    ledger: Ledger, site: SiteConfig, config: Mapping[str, Any], counter: str, owner: str
) -> dict[str, Any] | None:
    """The own part the site saved when it last trained the task in run `counter`, if its
    file hashes to what the ledger recorded; a missing or altered file is audited as
    `run.personal_lost` and the site's part starts again from the global model (None)."""
    detail = _detail(config)
    last = _last_trained(ledger, counter, detail["project"], detail["task_hash"])
    if last is None or not last.get("own"):
        return None
    state = site_personal.load(site.ledger, owner, str(last["own"]))
    if state is None:
        reason = "the site's file of its own layers is missing or not the one it wrote"
        ledger.record(
            "run.personal_lost",
            {**detail, **_hub_run(config), "counter": counter, "reason": reason},
        )
    return state


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training on the site's training split; a personalised task's own
    part stays in the node's state for the run (`site_personal`). When the server asks
    (`flip.fl.carried`), the reply also carries the validation metrics of the weights
    received, scored with the site's own layers as they were before training (once the
    round trained: a refused round scores nothing) and counted as an evaluation (`_carried`)."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config, hub_runs=hub_runs_only(context))
    state = msg.content["arrays"].to_torch_state_dict()
    own = _own(site, spec, config, context)
    received = Own(own.state, own.owner)
    trained, metrics = train_round(site, spec, config, state, run=context.run_id, own=own)
    evaluated = _carried(site, spec, config, state, context.run_id, received)
    if own.state is not None and own.owner is not None:
        site_personal.keep(context, own.owner, own.state)
    content = RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(metrics)})
    if evaluated is not None:
        content[EVALUATED] = ConfigRecord(evaluated)
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model (and a personalised task's personal one) on the site's
    validation or test split; only metrics leave, with the site's data fingerprint and its
    split sizes as released like counts."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config, hub_runs=hub_runs_only(context))
    state = msg.content["arrays"].to_torch_state_dict()
    own = _own(site, spec, config, context)
    metrics = evaluate_round(site, spec, config, state, run=context.run_id, own=own)
    about = {"name": site.name, **report_evaluation(site, spec, config)}
    content = RecordDict({"metrics": MetricRecord(metrics), "site": ConfigRecord(about)})
    return Message(content=content, reply_to=msg)


def report_evaluation(
    site: SiteConfig, spec: TaskSpec, config: Mapping[str, Any]
) -> dict[str, int | str]:
    """The site's data fingerprint and its training and test sizes as released like counts
    (`release_sizes`: a withheld size is left out), sent with its evaluation's metrics and
    audited as `run.evaluated` with the exact sizes (what the site countersigns by)."""
    train, test = usable_splits(site, spec, config)
    persons = {"n_train": train.person_ids, "n_test": test.person_ids}
    with Ledger(site.ledger) as ledger:
        sizes = release_sizes(
            ledger.engine,
            str(config["project"]),
            str(config["task-hash"]),
            {name: frozenset(ids.tolist()) for name, ids in persons.items()},
            site.policy.min_cell_size,
            site.policy.round_counts_to,
            site.policy.max_audit_cells,
        )
        fingerprint = data_fingerprint(site.store, spec.model_dump_json())
        exact = {"train": len(train.y), "test": len(test.y)}
        ledger.record(
            "run.evaluated",
            {**_detail(config), **_hub_run(config), "data_sha256": fingerprint, **sizes}
            | {"rows": exact},
        )
    released = {k: v for k, v in sizes.items() if v is not None}
    return {"data_sha256": fingerprint, **released}


@app.query()
def stats(msg: Message, context: Context) -> Message:
    """Sums and counts of the site's training features for federated scaling; no rows."""
    site = site_of(context)
    config = msg.content["config"]
    spec = authorise(site, config, hub_runs=hub_runs_only(context))
    content = RecordDict({"stats": MetricRecord(share_stats(site, spec, config))})
    return Message(content=content, reply_to=msg)
