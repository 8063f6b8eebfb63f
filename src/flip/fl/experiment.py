"""File experiments (`flip fl run`): sites as CSV files, trained federated, compared with baselines.

Each file stands for one site. Preprocessing is federated (every site shares only
sums, counts and category counts of its training rows); training runs in Flower's
simulation runtime; with `compare`, local-only and pooled models train on the
same splits and encoding, for as many epochs as the federated run's
rounds x local epochs. Each site's training rows give up a validation split: the
rounds are evaluated on it and the best round is chosen by it, never by the test
split. Metrics are computed per site and over the union of all sites' test sets,
each with a bootstrap 95% confidence interval.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord
from pydantic import ValidationError

from flip.data.features.csvfile import (
    DatasetError,
    SiteTable,
    Target,
    column_kind,
    looks_like_id,
    site_stats,
)
from flip.data.features.shuffle_split import train_test_indices
from flip.data.features.tabular import TabularData
from flip.fl import personal as personalisation
from flip.fl.bootstrap import intervals
from flip.fl.checkpoint import load as load_checkpoint
from flip.fl.personal import MODES
from flip.fl.preprocessing import Encoding, combine
from flip.fl.privacy import PrivacySpec, accounting_problem
from flip.fl.splits import VALIDATION_FRACTION
from flip.fl.strategies import NAMES as STRATEGIES
from flip.fl.strategies import TREE_STRATEGIES, StrategySpec, sites_problem
from flip.fl.tasks import binary, tabular_xgboost
from flip.fl.tasks.base import MAX_EPOCHS, MAX_ROUNDS
from flip.fl.tasks.models import KINDS, model_factory

XGBOOST = "tabular-xgboost"
#: What `flip fl run --task` accepts: the built-in kinds and gradient-boosted trees.
TASKS = (*KINDS, XGBOOST)

Metrics = dict[str, float | int | list[float] | None]


@dataclass(frozen=True)
class ExperimentOptions:
    """What `flip fl run` takes."""

    sites: dict[str, Path]
    target: str
    positive: str | None = None
    drop: tuple[str, ...] = ()
    task: str = "tabular-logreg"
    strategy: str = "fedavg"
    strategy_options: dict[str, float] = field(default_factory=dict)
    rounds: int = 20
    local_epochs: int = 5
    test_fraction: float = 0.25
    validation_fraction: float = VALIDATION_FRACTION
    seed: int = 0
    compare: bool = False
    runtime: str = "simulation"
    learning_rate: float = 0.05
    batch_size: int = 32
    l2: float = 1e-3
    privacy: PrivacySpec | None = None
    personalise: int = 0
    personal: str = ""
    ditto_lambda: float = 0.1
    checkpoint: Path | None = None
    secure_aggregation: bool = False

    def check(self) -> None:
        """Raise DatasetError on options no run can use."""
        if not self.sites:
            raise DatasetError("give at least one --site NAME=PATH.csv")
        if self.task not in TASKS:
            raise DatasetError(f"unknown --task {self.task}: choose one of {', '.join(TASKS)}")
        if self.strategy not in STRATEGIES:
            raise DatasetError(
                f"unknown --strategy {self.strategy}: choose one of {', '.join(STRATEGIES)}"
            )
        try:
            StrategySpec(name=self.strategy, options=self.strategy_options)
        except ValidationError as exc:
            raise DatasetError(f"--strategy-option: {exc.errors()[0]['msg']}") from None
        if problem := sites_problem(self.strategy, self.strategy_options, len(self.sites)):
            raise DatasetError(f"--strategy {self.strategy}: {problem}")
        if self.runtime != "simulation":
            raise DatasetError(
                f"unknown --runtime {self.runtime}: file experiments run in simulation"
            )
        if self.rounds < 1 or self.local_epochs < 1:
            raise DatasetError("--rounds and --local-epochs must be at least 1")
        if self.rounds > MAX_ROUNDS or self.local_epochs > MAX_EPOCHS:
            raise DatasetError(
                f"--rounds is at most {MAX_ROUNDS:,} and --local-epochs at most {MAX_EPOCHS:,}"
            )
        if not 0 < self.test_fraction < 1:
            raise DatasetError("--test-fraction must be between 0 and 1")
        if not 0 < self.validation_fraction < 1:
            raise DatasetError("--validation-fraction must be between 0 and 1")
        trees = self.task == XGBOOST
        if trees != (self.strategy in TREE_STRATEGIES):
            raise DatasetError(
                "--task tabular-xgboost trains with --strategy fedxgb_bagging or fedxgb_cyclic, "
                "and only they do"
            )
        if self.privacy is not None:
            self._check_privacy(self.privacy)
        if self.personalise < 0 or (trees and self.personalise):
            raise DatasetError("--personalise takes epochs >= 0, for tabular-logreg or -mlp")
        if self.personal:
            self._check_personal()
        if self.secure_aggregation:
            self._check_secure()

    def _check_privacy(self, privacy: PrivacySpec) -> None:
        if self.task == XGBOOST:
            raise DatasetError("--dp clips weight updates: it does not apply to tabular-xgboost")
        if problem := accounting_problem(privacy, self.strategy):
            raise DatasetError(f"--dp with --strategy {self.strategy}: {problem}")
        if privacy.level == "record" and self.strategy == "fedprox":
            raise DatasetError(
                "--dp record trains by DP-SGD, without FedProx's proximal term: use fedavg"
            )

    def _check_personal(self) -> None:
        if self.personal not in MODES:
            raise DatasetError(
                f"unknown --personal {self.personal}: choose one of {', '.join(MODES)}"
            )
        if self.task == XGBOOST or self.secure_aggregation or self.checkpoint is not None:
            raise DatasetError(
                "--personal keeps layers or a model at each site: a torch task, "
                "no --secagg or --checkpoint"
            )
        if not math.isfinite(self.ditto_lambda) or self.ditto_lambda < 0:
            raise DatasetError("--ditto-lambda must be a finite number, at least 0")

    def _check_secure(self) -> None:
        if self.strategy != "fedavg" or self.task == XGBOOST:
            raise DatasetError("--secagg sums weight updates: it runs fedavg with a torch task")
        if self.privacy is not None or self.checkpoint is not None:
            raise DatasetError("--secagg runs on Flower's legacy path: no --dp or --checkpoint")
        if len(self.sites) < 2:
            raise DatasetError("--secagg needs at least two sites: one site's sum is its update")


@dataclass
class PreparedSite:
    """One site's encoded splits: rounds are evaluated and the best chosen on `validation`."""

    name: str
    train: TabularData
    test: TabularData
    validation: TabularData


@dataclass
class Prepared:
    """Every site, the shared encoding, and what was left out and why."""

    sites: list[PreparedSite]
    encoding: Encoding
    notes: list[str] = field(default_factory=list)


def prepare(options: ExperimentOptions) -> Prepared:
    """Read, label, split and encode every site, with federated preprocessing."""
    tables = [SiteTable.read(name, path) for name, path in options.sites.items()]
    target = Target.parse(options.target, options.positive)
    notes: list[str] = []
    for table in tables:
        if target.column not in table.columns:
            raise DatasetError(f"site {table.name}: no column {target.column!r} (the target)")
    every_column = list(dict.fromkeys(c for t in tables for c in t.columns))
    unknown = [c for c in options.drop if c not in every_column]
    if unknown:
        raise DatasetError(f"--drop names columns no site has: {', '.join(unknown)}")
    excluded = {options.target, target.column, *options.drop}
    ids = {
        c for t in tables for c in t.columns if c not in excluded and looks_like_id(c, t.columns[c])
    }
    if ids:
        notes.append(f"ignoring id-like columns: {', '.join(sorted(ids))}")
    features = [c for c in every_column if c not in excluded | ids]
    for table in tables:
        for column in features:
            table.columns.setdefault(column, [""] * table.n_rows)
    kinds = {c: column_kind([v for t in tables for v in t.columns[c]]) for c in features}
    splits = []
    for table in tables:
        labels = target.labels(table.columns[target.column], table.name)
        rows = [i for i, y in enumerate(labels) if y is not None]
        if len(rows) < len(labels):
            notes.append(
                f"site {table.name}: {len(labels) - len(rows)} rows without a target left out"
            )
        y = np.array([labels[i] for i in rows], dtype=np.float32)
        if len(rows) < 4:
            raise DatasetError(f"site {table.name}: only {len(rows)} rows with a target")
        stratify = y if min(y.sum(), len(y) - y.sum()) >= 2 else None
        train_rows, test_rows = _pick(rows, options.test_fraction, options.seed, stratify)
        train_rows, validation_rows = _hold_out(train_rows, labels, options)
        by_row = dict(zip(rows, y, strict=True))
        splits.append(
            (table, sorted(train_rows), sorted(test_rows), sorted(validation_rows), by_row)
        )
    encoding = combine([site_stats(t, train, kinds) for t, train, *_ in splits], kinds)
    prepared = [
        PreparedSite(
            table.name,
            _data(encoding, table, train_rows, labels),
            _data(encoding, table, test_rows, labels),
            _data(encoding, table, validation_rows, labels),
        )
        for table, train_rows, test_rows, validation_rows, labels in splits
    ]
    return Prepared(prepared, encoding, notes)


def _hold_out(
    rows: list[int], labels: list[float | None], options: ExperimentOptions
) -> tuple[list[int], list[int]]:
    """(training rows, validation rows): a stratified share of a site's training rows."""
    if len(rows) < 2:
        raise DatasetError(f"{len(rows)} training rows: too few to hold out a validation split")
    y = [labels[i] for i in rows]
    stratify = y if min(sum(y), len(y) - sum(y)) >= 2 else None
    return _pick(rows, options.validation_fraction, options.seed, stratify)


def _pick(rows: list[int], fraction: float, seed: int, stratify) -> tuple[list[int], list[int]]:
    """(kept rows, held-out rows): `fraction` of `rows` held out by `seed`, stratified by
    `stratify` when given."""
    kept, held_out = train_test_indices(len(rows), fraction, seed, stratify)
    return [rows[i] for i in kept], [rows[i] for i in held_out]


def _data(
    encoding: Encoding, table: SiteTable, rows: list[int], labels: dict[int, float]
) -> TabularData:
    y = np.array([labels[i] for i in rows], dtype=np.float32)
    return TabularData(np.array(rows), encoding.encode(table.columns, rows), y, encoding.names)


#: A trained model: a torch module, or booster bytes for tabular-xgboost.
Model = torch.nn.Module | bytes


def predict(model: Model, x: np.ndarray) -> np.ndarray:
    """Predicted probabilities from either kind of model."""
    if isinstance(model, bytes):
        return tabular_xgboost.predict(model, x)
    return binary.predict(model, x)


def score(model_for: Callable[[PreparedSite], Model], sites: list[PreparedSite], seed: int = 0):
    """{"per_site": {name: {accuracy, auroc, n_test, *_ci}}, "overall": {accuracy, auroc, *_ci}}.

    `model_for(site)` is the model that predicts a site's test set; "overall" is
    over the union of every site's test predictions. Each metric has a bootstrap
    95% interval (`accuracy_ci`, `auroc_ci`) over the test rows, resampled by `seed`.
    """
    per_site: dict[str, Metrics] = {}
    all_p, all_y = [], []
    for site in sites:
        p = predict(model_for(site), site.test.x)
        per_site[site.name] = {**_metrics(p, site.test.y, seed), "n_test": len(site.test.y)}
        all_p.append(p)
        all_y.append(site.test.y)
    overall = _metrics(np.concatenate(all_p), np.concatenate(all_y), seed)
    return {"per_site": per_site, "overall": overall}


def _metrics(p: np.ndarray, y: np.ndarray, seed: int) -> Metrics:
    area = binary.auroc(y, p)
    return {
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "auroc": None if area != area else area,
        **intervals(y, p, seed=seed),
    }


def _fit(options: ExperimentOptions, data: TabularData, n_features: int) -> Model:
    if options.task == XGBOOST:
        return tabular_xgboost.fit(data, options.rounds * options.local_epochs, options.seed)
    model = model_factory(options.task)(n_features, options.seed)
    _train(options, model, data, options.rounds * options.local_epochs)
    return model


def _train(
    options: ExperimentOptions, model: torch.nn.Module, data: TabularData, epochs: int
) -> None:
    binary.train(
        model,
        data,
        epochs=epochs,
        learning_rate=options.learning_rate,
        batch_size=options.batch_size,
        l2=options.l2,
        seed=options.seed,
    )


@dataclass
class Federated:
    """The global model after the last round, and after the best (highest federated AUROC on
    the sites' validation splits); under personalisation, each site's own model."""

    model: Model
    best_round: int | None = None
    best: Model | None = None
    personal: dict[str, Model] = field(default_factory=dict)
    rounds: list[dict[str, float]] = field(default_factory=list)


def federated(
    options: ExperimentOptions,
    prepared: Prepared,
    on_round: Callable[[int, dict[str, float]], None] | None = None,
) -> Federated:
    """Train with the chosen Flower strategy in the simulation runtime: the global models."""
    from flip.fl.experiment_client import app as client_app
    from flip.fl.runtime.simulation import run_in_simulation
    from flip.fl.server import make_server_app

    n_features = len(prepared.encoding.names)
    trees = options.task == XGBOOST
    initial = None if trees else _new_model(options, n_features)
    config = ConfigRecord({"n-sites": len(prepared.sites), **train_config(options)})
    with site_files(prepared) as folder:
        if options.secure_aggregation:
            return _secure(options, prepared, config, initial, on_round)
        start = (
            ArrayRecord([np.frombuffer(b"", dtype=np.uint8)])
            if initial is None
            else ArrayRecord(initial.state_dict())
        )
        server_app, result = make_server_app(
            config,
            start,
            rounds=options.rounds,
            n_sites=len(prepared.sites),
            strategy=options.strategy,
            strategy_options=options.strategy_options,
            learning_rate=options.learning_rate,
            privacy=options.privacy,
            on_round=on_round,
            checkpoint=options.checkpoint / CHECKPOINT if options.checkpoint else None,
            seed=options.seed,
            evaluate_final=False,
        )
        run_in_simulation(server_app, client_app, len(prepared.sites), site_errors_fatal=True)

        def as_model(state: dict) -> Model:
            if initial is None:
                return next(iter(state.values())).numpy().tobytes()
            return binary.load_arrays(_new_model(options, n_features), state)

        final = as_model(result.state_dict)
        best = None if result.best_round is None else as_model(result.best_state_dict)
        own = {
            site.name: personalisation.site_model(
                final, options.personal, personalisation.personal_path(folder, index)
            )
            for index, site in enumerate(prepared.sites)
            if options.personal
        }
    return Federated(final, result.best_round, best, own, list(result.rounds))


def _new_model(options: ExperimentOptions, n_features: int) -> torch.nn.Module:
    return personalisation.new_model(options.task, options.personal, n_features, options.seed)


def train_config(options: ExperimentOptions) -> dict[str, int | float | str]:
    """What every site needs to train a round: the task, the seed and the optimiser settings."""
    return {
        "task": options.task,
        "strategy": options.strategy,
        "seed": options.seed,
        "local-epochs": options.local_epochs,
        "learning-rate": options.learning_rate,
        "batch-size": options.batch_size,
        "l2": options.l2,
        **({"personal": options.personal} if options.personal else {}),
        **({"ditto-lambda": options.ditto_lambda} if options.personal == "ditto" else {}),
    }


@contextmanager
def site_files(prepared: Prepared) -> Iterator[Path]:
    """A folder with each site's encoded splits, named to the ClientApp by EXPERIMENT_ENV."""
    from flip.fl.experiment_client import EXPERIMENT_ENV, load_site

    with tempfile.TemporaryDirectory(prefix="flip-experiment-") as folder:
        for index, site in enumerate(prepared.sites):
            np.savez(
                Path(folder) / f"site-{index}.npz",
                name=site.name,
                train_x=site.train.x,
                train_y=site.train.y,
                test_x=site.test.x,
                test_y=site.test.y,
                validation_x=site.validation.x,
                validation_y=site.validation.y,
            )
        os.environ[EXPERIMENT_ENV] = folder
        load_site.cache_clear()
        yield Path(folder)


def _secure(
    options: ExperimentOptions,
    prepared: Prepared,
    config: ConfigRecord,
    initial: torch.nn.Module,
    on_round: Callable[[int, dict[str, float]], None] | None,
) -> Federated:
    """FedAvg under SecAgg+: the server unmasks only the sum of the sites' updates (the
    legacy path keeps no best round)."""
    from flip.fl.runtime.simulation import run_in_simulation
    from flip.fl.secure_aggregation import client_app, secure_server_app

    server_app, result = secure_server_app(
        dict(config),
        initial.state_dict(),
        rounds=options.rounds,
        n_sites=len(prepared.sites),
        on_round=on_round,
    )
    run_in_simulation(server_app, client_app, len(prepared.sites), site_errors_fatal=True)
    return Federated(binary.load_arrays(initial, result.state_dict))


CHECKPOINT = "checkpoint.pt"
OPTIONS = "options.json"


def save_options(options: ExperimentOptions) -> None:
    """Write the options beside the checkpoint; refuse a folder that holds another run."""
    assert options.checkpoint is not None
    document = {
        **{k: v for k, v in dataclasses.asdict(options).items() if k != "checkpoint"},
        "sites": {name: str(path.resolve()) for name, path in options.sites.items()},
        "drop": list(options.drop),
        "privacy": options.privacy.model_dump() if options.privacy else None,
    }
    path = options.checkpoint / OPTIONS
    if path.exists() and json.loads(path.read_text(encoding="utf-8")) != document:
        raise DatasetError(
            f"{options.checkpoint} holds a checkpoint of another run: "
            "resume it with `flip fl resume`, or give another --checkpoint folder"
        )
    options.checkpoint.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


@contextmanager
def checkpointing(options: ExperimentOptions) -> Iterator[None]:
    """Write the run's options beside its checkpoint for the block; if the block fails before
    a round is checkpointed, take away what this run wrote there (a folder with no round
    holds nothing to resume), and if after, say where `flip fl resume` goes on from."""
    if options.checkpoint is None:
        yield
        return
    folder = options.checkpoint
    made = not folder.exists()
    fresh = not (folder / OPTIONS).exists()
    save_options(options)
    try:
        yield
    except Exception as exc:
        saved = load_checkpoint(folder / CHECKPOINT)
        if saved is not None:
            line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise RuntimeError(
                f"{line} (rounds 1-{saved.round} are checkpointed: "
                f"`flip fl resume {folder}` goes on from there)"
            ) from exc
        if fresh:
            (folder / OPTIONS).unlink(missing_ok=True)
        if made and not any(folder.iterdir()):
            folder.rmdir()
        raise


def load_options(folder: Path) -> ExperimentOptions:
    """The options of the run checkpointed in `folder`."""
    path = folder / OPTIONS
    if not path.exists():
        raise DatasetError(f"{folder} holds no run: start one with `flip fl run --checkpoint`")
    document = json.loads(path.read_text(encoding="utf-8"))
    return ExperimentOptions(
        **{
            **document,
            "sites": {name: Path(p) for name, p in document["sites"].items()},
            "drop": tuple(document["drop"]),
            "privacy": PrivacySpec(**document["privacy"]) if document["privacy"] else None,
            "checkpoint": folder,
        }
    )


def personalise(model: Model, data: TabularData, options: ExperimentOptions) -> Model:
    """A copy of the global model fine-tuned on one site's training split (it stays there)."""
    local = copy.deepcopy(model)
    _train(options, local, data, options.personalise)
    return local


@dataclass
class ExperimentRun:
    """An experiment's result document, its federated models and per-round metrics."""

    result: dict[str, object]
    model: Model
    prepared: Prepared
    rounds: list[dict[str, float]]
    best_round: int | None = None
    best: Model | None = None

    def lineage(self, options: ExperimentOptions) -> dict[str, object]:
        """What the registry keeps about the federated model."""
        encoding = self.prepared.encoding
        return {
            "task": options.task,
            "n_features": len(encoding.names),
            "seed": options.seed,
            "outcome": f"{options.target}: {options.positive or 'the non-reference value'}",
            "strategy": options.strategy,
            "rounds": options.rounds,
            "local_epochs": options.local_epochs,
            "runtime": options.runtime,
            "config": {
                "learning_rate": options.learning_rate,
                "batch_size": options.batch_size,
                "l2": options.l2,
                "test_fraction": options.test_fraction,
            },
            "encoding": {
                "numeric": encoding.numeric,
                "indicators": list(encoding.indicators),
                "categories": encoding.categories,
                "features": encoding.names,
            },
            "sites": {
                s.name: {
                    "n_train": len(s.train.y),
                    "n_test": len(s.test.y),
                    "data_sha256": hashlib.sha256(options.sites[s.name].read_bytes()).hexdigest(),
                }
                for s in self.prepared.sites
            },
            "metrics": self.result["federated"],
            "round_metrics": self.rounds,
            "privacy": self.result.get("privacy"),
        }


def privacy_report(options: ExperimentOptions, prepared: Prepared) -> dict[str, object]:
    """The privacy budget of the run; under record-level DP-SGD each site's epsilon (Opacus's
    accountant over the steps its rows take) and the largest of them."""
    assert options.privacy is not None
    report = options.privacy.budget(options.rounds)
    if options.privacy.level != "record":
        return report
    from flip.fl.dp_sgd import record_budget

    return record_budget(
        report,
        {site.name: len(site.train.y) for site in prepared.sites},
        batch_size=options.batch_size,
        epochs=options.local_epochs,
        rounds=options.rounds,
    )


def run_experiment(
    options: ExperimentOptions, on_round: Callable[[int, dict[str, float]], None] | None = None
) -> ExperimentRun:
    """Run the experiment; `.result` is the document `flip fl run --json` prints."""
    options.check()
    prepared = prepare(options)
    n_features = len(prepared.encoding.names)
    result: dict[str, object] = {
        "strategy": options.strategy,
        "rounds": options.rounds,
    }
    if options.privacy is not None:
        result["privacy"] = privacy_report(options, prepared)
    rounds: list[dict[str, float]] = []

    def record(number: int, metrics: dict[str, float]) -> None:
        rounds.append(metrics)
        if on_round:
            on_round(number, metrics)

    trained = federated(options, prepared, record)
    rounds = trained.rounds or rounds  # a resumed run's include those before the stop
    global_model = trained.model
    seed = options.seed
    result["federated"] = score(lambda site: global_model, prepared.sites, seed)
    if trained.best is not None:
        best = trained.best
        result["selection"] = {
            "best_round": trained.best_round,
            "chosen_on": "validation",
            "validation_auroc": rounds[trained.best_round - 1].get("auroc"),
        }
        result["best_round"] = score(lambda site: best, prepared.sites, seed)
    if trained.personal:
        result[options.personal] = score(
            lambda site: trained.personal[site.name], prepared.sites, seed
        )
    if options.personalise:
        result["personalised"] = score(
            lambda site: personalise(global_model, site.train, options), prepared.sites, seed
        )
    if options.compare:
        result["local"] = score(
            lambda site: _fit(options, site.train, n_features), prepared.sites, seed
        )
        pooled = TabularData(
            np.concatenate([s.train.person_ids for s in prepared.sites]),
            np.concatenate([s.train.x for s in prepared.sites]),
            np.concatenate([s.train.y for s in prepared.sites]),
            prepared.encoding.names,
        )
        pooled_model = _fit(options, pooled, n_features)
        result["pooled"] = score(lambda site: pooled_model, prepared.sites, seed)
    return ExperimentRun(result, global_model, prepared, rounds, trained.best_round, trained.best)


#: Arms an experiment may report, in the order tables show them.
ARMS = ("local", "federated", "best_round", *MODES, "personalised", "pooled")


def over_seeds(results: list[dict[str, object]], seeds: list[int]) -> dict[str, object]:
    """Mean and sample standard deviation of each arm's overall metrics over runs that differ
    only by seed (splits, initial weights, batches and the server's random streams)."""
    summary: dict[str, dict[str, dict[str, object]]] = {}
    for arm in ARMS:
        if not all(arm in r for r in results):
            continue
        summary[arm] = {}
        for metric in ("accuracy", "auroc"):
            values = [r[arm]["overall"][metric] for r in results]  # type: ignore[index]
            known = np.array([v for v in values if v is not None], dtype=float)
            summary[arm][metric] = {
                "mean": float(known.mean()) if len(known) else None,
                "sd": float(known.std(ddof=1)) if len(known) > 1 else None,
                "values": values,
            }
    return {"seeds": seeds, "summary": summary, "runs": results}


def run_seeds(
    options: ExperimentOptions,
    n: int,
    on_round: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, object]:
    """The experiment repeated with seeds seed, seed+1, ... seed+n-1: each run's result and
    the mean ± sd of every arm; `on_round(run, round, metrics)` reports progress."""
    if n < 1:
        raise DatasetError("--seeds must be at least 1")
    seeds = [options.seed + i for i in range(n)]
    results = []
    for index, seed in enumerate(seeds):
        report = None if on_round is None else functools.partial(on_round, index)
        results.append(run_experiment(dataclasses.replace(options, seed=seed), report).result)
    return {"strategy": options.strategy, "rounds": options.rounds, **over_seeds(results, seeds)}
