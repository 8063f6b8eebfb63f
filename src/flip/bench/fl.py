"""FLIP's federated round time against a bare Flower app in the same run, and bytes per round.

Both train the same logistic regression on the same prepared sites, with the same
epochs, in Flower's simulation runtime; a round's time is the gap between two
consecutive aggregated evaluations, and the first round (actor start-up) is left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.serde import message_to_proto
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from flip.bench.ingest import Figure
from flip.bench.memory import PeakTreeRss
from flip.fl.experiment import (
    ExperimentOptions,
    federated,
    prepare,
    site_files,
    train_config,
)
from flip.fl.runtime.simulation import run_in_simulation
from flip.fl.tasks.models import model_factory
from flip.synth import default_profiles
from flip.synth.flat import write_table

#: Where a benchmark reports each pass as it ends (the CLI: a line on stderr).
Progress = Callable[[str], None]


def _silent(_: str) -> None:
    """Report nothing."""


def _stamp(stamps: list[float], *_: object) -> None:
    stamps.append(time.perf_counter())


def _round_seconds(stamps: list[float]) -> float:
    """The mean time between consecutive rounds' ends: Flower's grid polls every 0.1 s, so
    single rounds come in steps of about 0.1 s, which a median keeps and a mean averages."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def _bare(options: ExperimentOptions, prepared, stamps: list[float]) -> None:
    from flip.bench.bare_flower import app as bare_client

    n_features = prepared.sites[0].train.x.shape[1]
    app = ServerApp()

    def aggregate(replies, key):
        stamps.append(time.perf_counter())
        return aggregate_metricrecords(replies, key)

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        n = len(prepared.sites)
        strategy = FedAvg(
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
            evaluate_metrics_aggr_fn=aggregate,
        )
        model = torch.nn.Linear(n_features, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        config = ConfigRecord(
            {
                "learning-rate": options.learning_rate,
                "l2": options.l2,
                "batch-size": options.batch_size,
                "local-epochs": options.local_epochs,
            }
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=options.rounds,
            train_config=config,
            evaluate_config=config,
        )

    with site_files(prepared):
        run_in_simulation(app, bare_client, len(prepared.sites))


def run(
    work: Path,
    rounds: int = 12,
    sites: int = 3,
    secure: bool = True,
    passes: int = 2,
    progress: Progress = _silent,
) -> list[Figure]:
    """Round times of FLIP and of bare Flower, each run's peak memory, each as a ratio to
    bare Flower's, and bytes per round.

    FLIP and bare Flower run in turn `passes` times, each side keeping its fastest
    round time, so a spell of load on a shared machine does not land on one side only;
    who goes first swaps each pass, and `progress` hears each run's figures as it ends.
    With `secure`, also FedAvg under SecAgg+: its round time and bytes per round.
    """
    paths = {p.name: write_table(p, work / f"{p.name}.csv") for p in default_profiles(sites)}
    options = ExperimentOptions(sites=paths, target="num", positive="num>0", rounds=rounds)
    prepared = prepare(options)
    runs = {
        "flip": lambda stamps: federated(options, prepared, partial(_stamp, stamps)),
        "bare": lambda stamps: _bare(options, prepared, stamps),
    }
    best = dict.fromkeys(runs, float("inf"))
    peak = dict.fromkeys(runs, 0)
    for turn in range(passes):
        for side in ("flip", "bare") if turn % 2 == 0 else ("bare", "flip"):
            stamps: list[float] = []
            with PeakTreeRss() as rss:
                runs[side](stamps)
            seconds = _round_seconds(stamps)
            best[side] = min(best[side], seconds)
            peak[side] = max(peak[side], rss.bytes)
            progress(
                f"pass {turn + 1}/{passes}, {side}: {seconds:.3f} s a round, "
                f"peak {rss.bytes / 2**20:,.0f} MiB"
            )
    flip_round, bare_round = best["flip"], best["bare"]
    plain_bytes = _plain_train_bytes(options, prepared)
    figures = [
        Figure("sites x rounds", sites * rounds, "site-rounds", f"{sites} sites, {rounds} rounds"),
        Figure("bare Flower round", bare_round, "s", "mean, round 1 left out; best pass"),
        Figure("FLIP round", flip_round, "s", "experiment client + FLIP ServerApp; best pass"),
        Figure("FLIP / bare round time", flip_round / bare_round, "x", "aim <= 1.05"),
        Figure("peak RSS, FLIP run", peak["flip"] / 2**20, "MiB", "this process + Ray, summed"),
        Figure("peak RSS, bare run", peak["bare"] / 2**20, "MiB", "the same"),
        Figure("FLIP / bare peak RSS", peak["flip"] / peak["bare"], "x", "highest pass each"),
        Figure("train bytes per round per site", plain_bytes, "bytes", "serialised, down + up"),
    ]
    if not secure:
        return figures
    secure_round, secure_bytes = _secure(options, prepared)
    progress(f"SecAgg+: {secure_round:.3f} s a round")
    return [
        *figures,
        Figure("FLIP round, SecAgg+", secure_round, "s", "four message exchanges a round"),
        Figure("SecAgg+ / bare round time", secure_round / bare_round, "x", "bare: plain FedAvg"),
        Figure("SecAgg+ / FLIP round time", secure_round / flip_round, "x"),
        Figure("same bytes, SecAgg+", secure_bytes, "bytes", "every SecAgg+ stage, down + up"),
        Figure("SecAgg+ / plain bytes", secure_bytes / plain_bytes, "x"),
    ]


def _size(message: Message) -> int:
    return message_to_proto(message).ByteSize()


def _plain_train_bytes(options: ExperimentOptions, prepared) -> float:
    """Serialised size of one train instruction and its reply, as FLIP's ServerApp sends them."""
    model = model_factory(options.task)(len(prepared.encoding.names), options.seed)
    arrays = ArrayRecord(model.state_dict())
    config = ConfigRecord({**train_config(options), "server-round": 1})
    down = Message(
        RecordDict({"arrays": arrays, "config": config}), dst_node_id=1, message_type="train"
    )
    metrics = MetricRecord({"loss": 0.5, "train_loss": 0.5, "num-examples": 100.0})
    up = Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=down)
    return float(_size(down) + _size(up))


def _secure(options: ExperimentOptions, prepared) -> tuple[float, float]:
    """(round seconds, train bytes per round per site) of FedAvg under SecAgg+."""
    from flip.fl.secure_aggregation import client_app, secure_server_app

    stamps: list[float] = []
    sizes: list[int] = []

    def observe(message: Message) -> None:
        if message.metadata.message_type == "train" and message.has_content():
            sizes.append(_size(message))

    config = train_config(options)
    model = model_factory(options.task)(len(prepared.encoding.names), options.seed)
    app, _ = secure_server_app(
        config,
        model.state_dict(),
        rounds=options.rounds,
        n_sites=len(prepared.sites),
        on_round=lambda r, m: stamps.append(time.perf_counter()),
        observe=observe,
    )
    with site_files(prepared):
        run_in_simulation(app, client_app, len(prepared.sites))
    return _round_seconds(stamps), sum(sizes) / (len(prepared.sites) * options.rounds)


def _site(work: Path, name: str, patients: int) -> Path:
    """A synthetic site with its store ingested; returns its site.yaml."""
    from flip.config import SiteConfig
    from flip.data.cdm.store import open_store
    from flip.data.ingest import ingest_path
    from flip.synth import SiteProfile, generate_site
    from flip.synth.export import export_site

    folder = work / name
    profile = SiteProfile(name, patients, "fhir-ndjson", age_mean=60, smoker_rate=0.25)
    export_site(profile, generate_site(profile, seed=len(name)), folder / "export", images=False)
    store = open_store(folder / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder / "export")
    store.close()
    SiteConfig(name=name, store="store.duckdb", ledger="ledger.sqlite").save(folder / "site.yaml")
    return folder / "site.yaml"


def deployment(
    work: Path, sites: int = 2, rounds: int = 3, progress: Progress = _silent
) -> list[Figure]:
    """Seconds per round of FLIP and of a bare Flower app on the same SuperLink and SuperNodes.

    Both run FedAvg (train, then evaluate, each round) of the same model on the same
    sites' rows, in turn, on one running deployment (TLS and node auth on). A round's
    time is the difference between a run of `rounds` rounds and a run of one, divided
    by the rounds between, so start-up and FLIP's final evaluation cancel out;
    `progress` hears each run's time as it ends.
    """
    from flip.bench.bare_flower import ARRAYS
    from flip.config import SiteConfig
    from flip.data.ledger import Ledger
    from flip.fl.runtime.deployment import Deployment
    from flip.fl.runtime.flower import CONNECTION, write_app
    from flip.fl.tasks import mace_task, task_hash
    from flip.fl.tasks.base import load_splits

    spec = mace_task()
    configs = {f"site-{i}": _site(work, f"site-{i}", 300) for i in range(sites)}
    for path in configs.values():
        site = SiteConfig.load(path)
        Ledger(site.ledger).decide("bench", task_hash(spec), "approved", by="b")
        train, test, _ = load_splits(site.store, spec)
        arrays = {"train_x": train.x, "train_y": train.y, "test_x": test.x, "test_y": test.y}
        np.savez(path.parent / ARRAYS, **arrays)
    settings = {
        "n-sites": sites,
        "n-features": len(spec.data.features),
        "learning-rate": spec.learning_rate,
        "l2": spec.l2,
        "batch-size": spec.batch_size,
        "local-epochs": spec.local_epochs,
    }
    flip_seconds: dict[int, float] = {}
    bare_seconds: dict[int, float] = {}
    with Deployment(work / "flower", configs) as running:
        link = running.superlink
        assert link is not None
        for n in (1, rounds):
            flip_seconds[n] = running.run("bench", spec, rounds=n, round_timeout=120).seconds
            progress(f"deployment, flip, {n} round(s): {flip_seconds[n]:.1f} s")
            app = write_app(
                work / f"bare-app-{n}",
                "flip.bench.bare_flower import app",
                {**settings, "rounds": n},
                server="flip.bench.bare_flower import server_app",
            )
            start = time.perf_counter()
            link.flwr("run", str(app), CONNECTION, "--stream", timeout=300 + 120 * n)
            bare_seconds[n] = time.perf_counter() - start
            progress(f"deployment, bare, {n} round(s): {bare_seconds[n]:.1f} s")
    flip_round = (flip_seconds[rounds] - flip_seconds[1]) / (rounds - 1)
    bare_round = (bare_seconds[rounds] - bare_seconds[1]) / (rounds - 1)
    note = f"{sites} SuperNodes, TLS + node auth; runs of 1 and {rounds} rounds"
    return [
        Figure("deployment round, bare Flower", bare_round, "s", note),
        Figure("deployment round, FLIP", flip_round, "s", note),
        Figure("FLIP / bare deployment round", flip_round / bare_round, "x", "aim <= 1.2"),
        Figure("FLIP start-up + 1 round", flip_seconds[1], "s", "flwr run to result"),
        Figure("bare start-up + 1 round", bare_seconds[1], "s", "flwr run to its end"),
    ]


def whole_command(
    work: Path, sites: int = 4, rounds: int = 30, passes: int = 2, progress: Progress = _silent
) -> list[Figure]:
    """Wall time of the whole `flip fl run` command against a bare Flower simulation app's.

    Both are fresh processes training FedAvg for `rounds` rounds over the same sites:
    `flip fl run` from the CSV files (start-up, reading, federated preprocessing,
    splits, training, final scoring), the bare app (`python -m flip.bench.bare_flower`)
    from the encoded arrays FLIP prepared beforehand. They run in turn `passes` times,
    each keeping its fastest; `progress` hears each run's time as it ends. A bare run that
    did not evaluate every round (its sites failed) is an error, not a figure.
    """
    import subprocess
    import sys

    paths = {p.name: write_table(p, work / f"{p.name}.csv") for p in default_profiles(sites)}
    options = ExperimentOptions(sites=paths, target="num", positive="num>0", rounds=rounds)
    prepared = prepare(options)
    arrays = work / "bare-arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    for index, site in enumerate(prepared.sites):
        split = {"train_x": site.train.x, "train_y": site.train.y}
        np.savez(arrays / f"site-{index}.npz", **split, test_x=site.test.x, test_y=site.test.y)
    settings = {
        "n-sites": sites,
        "n-features": len(prepared.encoding.names),
        "rounds": rounds,
        "learning-rate": options.learning_rate,
        "l2": options.l2,
        "batch-size": options.batch_size,
        "local-epochs": options.local_epochs,
    }
    commands = {
        "flip": [sys.executable, "-m", "flip", "fl", "run", "--target", "num"]
        + ["--positive", "num>0", "--rounds", str(rounds), "--json"]
        + [arg for name, path in paths.items() for arg in ("--site", f"{name}={path}")],
        "bare": [sys.executable, "-m", "flip.bench.bare_flower", str(arrays), json.dumps(settings)],
    }
    best = dict.fromkeys(commands, float("inf"))
    cpu = dict.fromkeys(commands, float("inf"))
    for turn in range(passes):
        for side in ("flip", "bare") if turn % 2 == 0 else ("bare", "flip"):
            start = time.perf_counter()
            with PeakTreeRss() as tree:
                done = subprocess.run(commands[side], check=True, capture_output=True, timeout=1800)
            seconds = time.perf_counter() - start
            if side == "bare":
                _check_bare(done.stdout, rounds)
            best[side] = min(best[side], seconds)
            cpu[side] = min(cpu[side], tree.cpu_seconds)
            progress(
                f"whole command, pass {turn + 1}/{passes}, {side}: {seconds:.1f} s, "
                f"{tree.cpu_seconds:.1f} s of CPU"
            )
    note = f"{sites} sites, {rounds} rounds, process start to exit; best of {passes}"
    tree_note = "user + system, the process and Ray's, sampled; least of each"
    return [
        Figure("bare Flower app, whole command", best["bare"], "s", note),
        Figure("flip fl run, whole command", best["flip"], "s", note),
        Figure("flip fl run / bare, whole command", best["flip"] / best["bare"], "x", "aim 1.25"),
        Figure("bare Flower app, whole command CPU", cpu["bare"], "s", tree_note),
        Figure("flip fl run, whole command CPU", cpu["flip"], "s", tree_note),
        Figure(
            "flip fl run / bare, whole command CPU",
            cpu["flip"] / cpu["bare"],
            "x",
            "what load on a shared machine moves least",
        ),
    ]


def _check_bare(stdout: bytes, rounds: int) -> None:
    """Raise RuntimeError unless the bare app's output has an accuracy for every round."""
    lines = [line for line in stdout.decode().splitlines() if line.startswith('{"accuracy"')]
    accuracy = json.loads(lines[-1])["accuracy"] if lines else []
    if len(accuracy) != rounds:
        raise RuntimeError(
            f"the bare Flower app evaluated {len(accuracy)} of {rounds} rounds: its sites failed"
        )
