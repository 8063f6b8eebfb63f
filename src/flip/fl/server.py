"""The ServerApp: Flower's FedAvg over approved sites, with per-round reporting.

For a task with federated scaling it first asks every site for the sums and
counts of its training features and sends the scaling they give with every
later message. After the last round it asks every site to evaluate the final
global model and keeps each site's metrics (AUROC, accuracy, test size) —
metrics, never rows.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from logging import WARNING
from pathlib import Path

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords, sample_nodes

from flip.data.features.tabular import Scaling
from flip.fl.carried import CarriedEvaluation
from flip.fl.checkpoint import Checkpoint
from flip.fl.checkpoint import load as load_checkpoint
from flip.fl.checkpoint import save as save_checkpoint
from flip.fl.preprocessing import STATS_KEYS, scaling_of
from flip.fl.privacy import PrivacySpec, accounting_problem, privacy_config, with_privacy
from flip.fl.resume import (
    ContinuedRounds,
    random_state,
    restore_random,
    restore_strategy,
    seed_server,
    strategy_state,
)
from flip.fl.splits import EVALUATE_SPLIT
from flip.fl.strategies import make_strategy
from flip.fl.tasks import outcomes
from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.models import new_model
from flip.fl.tasks.sandbox import initial_weights

RoundCallback = Callable[[int, dict[str, float]], None]
#: Computes a run's federated scaling from its sites, once, before round 1.
ScalingStep = Callable[[Grid], Scaling]


@dataclass
class FederatedResult:
    """What a federated run produced: the final model and metrics per round and per site."""

    state_dict: dict = field(default_factory=dict)
    rounds: list[dict[str, float]] = field(default_factory=list)
    per_site: dict[str, dict[str, float]] = field(default_factory=dict)
    scaling: Scaling | None = None
    best_round: int | None = None
    best_state_dict: dict = field(default_factory=dict)

    def record(self, number: int, metrics: dict[str, float]) -> None:
        """Keep round `number`'s (from 1) metrics at `rounds[number - 1]`; a round before it
        that has none keeps an empty record, so no later round moves to its place."""
        self.rounds.extend({} for _ in range(number - len(self.rounds)))
        self.rounds[number - 1] = metrics

    def scored(self, number: int) -> bool:
        """Whether round `number` has metrics."""
        return 0 < number <= len(self.rounds) and bool(self.rounds[number - 1])

    def is_best(self, number: int) -> bool:
        """Whether round `number` (from 1) has the best federated score so far: AUROC, or
        the outcome's own (macro-F1, C-index, lowest RMSE; `outcomes.selection_score`)."""
        if not self.scored(number):
            return False
        score = outcomes.selection_score(self.rounds[number - 1])
        if score != score:
            return False
        best = self.best_round
        return best is None or score > outcomes.selection_score(self.rounds[best - 1])


#: The run config key naming the hub run a Flower run trains (absent outside the hub).
HUB_RUN = "hub-run"


def run_config(project: str, spec: TaskSpec, hub_run: int | None = None) -> ConfigRecord:
    """The config every site receives: the project, the task and the hash it must match, and
    the hub run this is (`hub_run`), which sites count their trained rounds by."""
    config = {"project": project, "task": spec.model_dump_json(), "task-hash": task_hash(spec)}
    if hub_run is not None:
        config[HUB_RUN] = int(hub_run)
    return ConfigRecord(config)


def run_of(config: ConfigRecord) -> str:
    """Which run a checkpoint is of: the project, task hash and hub run `config` names."""
    return " ".join(f"{key}={config[key]}" for key in RUN_KEYS if key in config)


#: The run config keys that say which run a checkpoint belongs to.
RUN_KEYS = ("project", "task-hash", HUB_RUN)


def make_server_app(
    config: ConfigRecord,
    initial: ArrayRecord,
    *,
    rounds: int,
    n_sites: int,
    strategy: str = "fedavg",
    strategy_options: dict[str, float] | None = None,
    learning_rate: float = 0.1,
    privacy: PrivacySpec | None = None,
    on_round: RoundCallback | None = None,
    timeout: float = 600.0,
    min_sites: int | None = None,
    checkpoint: Path | None = None,
    scaling: ScalingStep | None = None,
    seed: int = 0,
    evaluate_final: bool = True,
    evaluate_every: int | None = None,
) -> tuple[ServerApp, FederatedResult]:
    """A ServerApp running a named Flower strategy (its hyperparameters overridden by
    `strategy_options`) for `rounds` rounds over `n_sites` sites.

    Every site receives `config` with each message; `on_round` gets each round's
    aggregated evaluation metrics. A round starts once `min_sites` (default all) are
    connected and waits at most `timeout` seconds for their replies: a straggler's
    late reply is left out. With `checkpoint`, the global model is saved there after
    every round, and a run that finds one goes on from its round. `scaling` runs
    before round 1; what it returns goes to the sites in `config["scaling"]`, into
    every checkpoint and into the result. The result also keeps the best round's
    model: the one of highest federated AUROC. The server's random streams start from
    `seed`; a resumed run takes them, the strategy's state and the round numbers from
    its checkpoint, so it ends with the weights of a run never stopped. Without
    `evaluate_final`, the sites are not asked to evaluate the final model on their test
    splits (file experiments score the test splits themselves). With `evaluate_every` k,
    each round's validation metrics come with the next round's train replies
    (`flip.fl.carried`), and evaluate messages go out only after every k-th round and the
    last; the best round is still the one of the best validation score.
    """
    if privacy is not None and (problem := accounting_problem(privacy, strategy)):
        raise ValueError(problem)
    result = FederatedResult()
    app = ServerApp()
    done = [0]
    running: list = [None]
    continued: list[ContinuedRounds] = []
    latest: dict[int, ArrayRecord] = {}

    def choose(number: int) -> None:
        """Keep round `number`'s model as the best if its metrics say so."""
        if number in latest and result.is_best(number):
            result.best_round = number
            result.best_state_dict = latest[number].to_torch_state_dict()

    def keep(server_round: int, arrays: ArrayRecord) -> None:
        """Flower calls this last in each round: keep the best model and checkpoint (a round
        whose metrics come with the next train replies is judged when they come)."""
        if server_round == 0:
            return
        number = done[0] + server_round
        latest.clear()
        latest[number] = arrays
        choose(number)
        if checkpoint is not None:
            state = arrays.to_torch_state_dict()
            saved = Checkpoint(
                number,
                state,
                list(result.rounds),
                result.scaling,
                result.best_round,
                result.best_state_dict,
                strategy_state(running[0]),
                random_state(),
                run_of(config),
            )
            save_checkpoint(checkpoint, saved)

    def record(number: int, aggregated: MetricRecord) -> None:
        metrics = {k: float(v) for k, v in aggregated.items() if isinstance(v, int | float)}
        result.record(number, metrics)
        if on_round:
            on_round(number, metrics)

    def evaluate_aggregate(replies: list[RecordDict], weight_key: str) -> MetricRecord:
        aggregated = aggregate_metricrecords(replies, weight_key)
        record(continued[0].evaluating, aggregated)
        return aggregated

    def carried(number: int, aggregated: MetricRecord) -> None:
        record(number, aggregated)
        choose(number)

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        start = initial
        resumed = load_checkpoint(checkpoint) if checkpoint is not None else None
        if resumed is not None and resumed.run and resumed.run != run_of(config):
            raise ValueError(
                f"the checkpoint {checkpoint} is of another run ({resumed.run}), not this one "
                f"({run_of(config)}): resume that run, or move the checkpoint away"
            )
        if resumed is not None:
            start, done[0] = ArrayRecord(resumed.state_dict), resumed.round
            result.rounds[:] = resumed.rounds[: resumed.round]
            result.scaling = resumed.scaling
            result.best_round, result.best_state_dict = resumed.best_round, resumed.best_state_dict
        if result.scaling is None and scaling is not None:
            result.scaling = scaling(grid)
        sent = ConfigRecord({**config, **privacy_config(privacy, strategy)})
        if result.scaling is not None:
            sent["scaling"] = result.scaling.model_dump_json()
        arrays = start
        if done[0] < rounds:
            chosen = make_strategy(
                strategy,
                n_sites,
                learning_rate,
                min_sites,
                strategy_options,
                evaluate_metrics_aggr_fn=evaluate_aggregate,
            )
            if privacy is not None:
                chosen = with_privacy(chosen, privacy, n_sites)
            running[0] = chosen
            if resumed is not None and resumed.random:
                restore_strategy(chosen, resumed.strategy)
                restore_random(resumed.random)
            else:
                seed_server(seed)
            if evaluate_every is not None:
                latest[done[0]] = start
                chosen = CarriedEvaluation(chosen, evaluate_every, rounds, result.scored, carried)
            continued[:] = [ContinuedRounds(chosen, done[0])]
            arrays = (
                continued[0]
                .start(
                    grid=grid,
                    initial_arrays=start,
                    num_rounds=rounds - done[0],
                    timeout=timeout,
                    train_config=sent,
                    evaluate_config=sent,
                    evaluate_fn=keep,
                )
                .arrays
            )
        result.state_dict = arrays.to_torch_state_dict()
        if evaluate_final:
            final = ConfigRecord({**sent, "server-round": rounds})
            result.per_site = final_evaluation(grid, arrays, final, timeout)

    return app, result


def task_server_app(
    project: str,
    spec: TaskSpec,
    *,
    rounds: int,
    n_sites: int,
    hub_run: int | None = None,
    **kwargs,
) -> tuple[ServerApp, FederatedResult]:
    """The ServerApp of a project's task, with the task's strategy: sites check its hash
    against their approvals (and, for `hub_run`, that they joined that hub run).

    A task that asks for secure aggregation runs FedAvg under SecAgg+ (its sites run
    `flip.fl.secure_aggregation.task_client_app`); it keeps no checkpoints yet.
    """
    initial = _initial_weights(spec)
    config = run_config(project, spec, hub_run)
    step = None
    if spec.data.scaling == "federated":
        step = scaling_step(
            spec, config, kwargs.get("min_sites") or n_sites, kwargs.get("timeout", 600.0)
        )
    if spec.secure_aggregation:
        from flip.fl.secure_aggregation import secure_server_app

        if kwargs.get("checkpoint") is not None:
            raise ValueError("a secure aggregation run keeps no checkpoints yet")
        if kwargs.get("evaluate_every") is not None:
            raise ValueError("a secure aggregation run evaluates every round (no evaluate_every)")
        return secure_server_app(
            dict(config),
            initial,
            rounds=rounds,
            n_sites=n_sites,
            on_round=kwargs.get("on_round"),
            scaling=step,
        )
    return make_server_app(
        config,
        ArrayRecord(initial),
        rounds=rounds,
        n_sites=n_sites,
        strategy=spec.strategy.name,
        strategy_options=spec.strategy.options,
        learning_rate=spec.learning_rate,
        privacy=spec.privacy,
        scaling=step,
        seed=server_seed(spec),
        **kwargs,
    )


def _initial_weights(spec: TaskSpec) -> dict[str, torch.Tensor]:
    """The global model's first weights: a custom task's are built by its code in the
    sandbox, never in the server's process."""
    if spec.kind == "custom":
        return initial_weights(spec.model_dump_json())
    return new_model(spec).state_dict()


def server_seed(spec: TaskSpec) -> int:
    """The seed of the server's random streams: the task's, unless the server adds DP noise,
    whose seed must stay secret (a public seed would let anyone replay and remove the noise);
    a resumed run takes its streams from the checkpoint either way."""
    return spec.seed if spec.privacy is None else secrets.randbits(63)


def scaling_step(
    spec: TaskSpec, config: ConfigRecord, min_sites: int, timeout: float
) -> ScalingStep:
    """The step that asks the run's sites for their statistics and combines them."""
    names = [f.name for f in spec.data.features]
    ask = legacy_stats_query if spec.secure_aggregation else stats_query
    config = ConfigRecord({**config, "server-round": 0})  # before round 1

    def step(grid: Grid) -> Scaling:
        return scaling_of(ask(grid, config, len(names), min_sites, timeout), names)

    return step


SiteStats = dict[str, list[float]]


def _gather(
    grid: Grid,
    ask: Callable[[int], Message],
    read: Callable[[Message], SiteStats],
    n_features: int,
    min_sites: int,
    timeout: float,
) -> list[SiteStats]:
    """The feature statistics of every site connected once `min_sites` are; a site that
    refuses or fails is left out, as it is from a round."""
    _, nodes = sample_nodes(grid, min_sites, min_sites)
    gathered: list[SiteStats] = []
    problems: list[str] = []
    for reply in grid.send_and_receive([ask(node) for node in nodes], timeout=timeout):
        if reply.has_error():
            problems.append(reply.error.reason)
            continue
        stats = read(reply)
        if any(len(stats.get(key, ())) != n_features for key in STATS_KEYS):
            problems.append(f"node {reply.metadata.src_node_id} sent malformed statistics")
            continue
        gathered.append(stats)
    for problem in problems:
        log(WARNING, "federated scaling leaves out a site: %s", problem)
    if not gathered:
        raise RuntimeError(
            "federated scaling: no site sent statistics: " + ("; ".join(problems) or "no reply")
        )
    return gathered


def stats_query(
    grid: Grid, config: ConfigRecord, n_features: int, min_sites: int, timeout: float
) -> list[SiteStats]:
    """Each site's sums and counts of its training features, asked with a query message."""

    def ask(node: int) -> Message:
        content = RecordDict({"config": config})
        return Message(content=content, message_type=MessageType.QUERY, dst_node_id=node)

    def read(reply: Message) -> SiteStats:
        return {k: [float(v) for v in values] for k, values in reply.content["stats"].items()}

    return _gather(grid, ask, read, n_features, min_sites, timeout)


def legacy_stats_query(
    grid: Grid, config: ConfigRecord, n_features: int, min_sites: int, timeout: float
) -> list[SiteStats]:
    """The same statistics from sites on Flower's legacy path (a NumPyClient's properties)."""
    from flwr.common import GetPropertiesIns
    from flwr.common.constant import MessageTypeLegacy
    from flwr.compat.common import recorddict_compat as compat

    def ask(node: int) -> Message:
        content = compat.getpropertiesins_to_recorddict(GetPropertiesIns(dict(config)))
        return Message(
            content=content, message_type=MessageTypeLegacy.GET_PROPERTIES, dst_node_id=node
        )

    def read(reply: Message) -> SiteStats:
        properties = compat.recorddict_to_getpropertiesres(reply.content).properties
        return json.loads(str(properties["stats"]))

    return _gather(grid, ask, read, n_features, min_sites, timeout)


def final_evaluation(
    grid: Grid, arrays: ArrayRecord, config: ConfigRecord, timeout: float
) -> dict[str, dict[str, float]]:
    """Each site's metrics for the final model on its test split, by site name, with its
    data's fingerprint and its training and test sizes as the site releases them (None:
    withheld)."""
    config = ConfigRecord({**config, EVALUATE_SPLIT: "test"})
    messages = [
        Message(
            content=RecordDict({"arrays": arrays, "config": config}),
            message_type=MessageType.EVALUATE,
            dst_node_id=node,
        )
        for node in grid.get_node_ids()
    ]
    per_site: dict[str, dict[str, float]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue
        site = reply.content["site"]
        metrics = reply.content["metrics"]
        per_site[str(site["name"])] = {
            **outcomes.reported(metrics),
            "n_test": None,
            **{k: site[k] for k in ("n_train", "n_test", "data_sha256") if k in site},
        }
    return per_site
