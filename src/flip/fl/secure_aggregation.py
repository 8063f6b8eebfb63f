"""Secure aggregation with Flower's SecAgg+: the server learns the sum of the updates, no one's.

Each site masks its update with pairwise masks that cancel in the sum and
secret-shares its mask seeds, so the server can unmask the sum (even when a
few sites drop out) but never a single site's vector. Flower implements the
protocol on its legacy path only: a `flwr.server.strategy.FedAvg` run by a
`DefaultWorkflow` whose fit step is `SecAggPlusWorkflow`, and a ClientApp built
from a `NumPyClient` with `secaggplus_mod`. FLIP configures those, nothing more:
`client_app` serves file experiments (`flip fl run --secagg`), `task_client_app`
project tasks whose spec asks for `secure_aggregation` (same site checks as
`flip.fl.client`, which refuses such tasks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Scalar, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import ServerApp

from flip.fl.client import (
    authorise,
    evaluate_round,
    hub_runs_only,
    report_evaluation,
    share_stats,
    site_of,
)
from flip.fl.client import train_round as site_train_round
from flip.fl.experiment_client import load_site, train_round
from flip.fl.server import FederatedResult, ScalingStep
from flip.fl.splits import EVALUATE_SPLIT
from flip.fl.tasks import binary, outcomes
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.models import model_factory, new_model

#: Parameters are clipped to +-CLIPPING_RANGE before masking (Flower's default is 8).
CLIPPING_RANGE = 8.0
#: Each update is weighted by examples / MAX_WEIGHT before quantisation; a site with more
#: training examples than this risks overflowing the modulus (Flower's default is 1,000).
MAX_WEIGHT = 10_000.0
#: What a site reports with its evaluation besides metrics (flip.fl.client.report_evaluation).
REPORTED = ("n_train", "n_test", "data_sha256")
#: Sites each site secret-shares its mask seeds with (SecAgg+ shares with neighbours only).
SHARES = 5


def _state(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in model.state_dict().values()]


def _file_model(
    config: dict[str, Scalar], n_features: int, parameters: list[np.ndarray]
) -> torch.nn.Module:
    model = model_factory(str(config["task"]))(n_features, int(config["seed"]))
    return binary.load_arrays(model, dict(zip(model.state_dict(), parameters, strict=True)))


def site_update(
    config: dict[str, Scalar], partition: int, parameters: list[np.ndarray]
) -> tuple[list[np.ndarray], int]:
    """(trained parameters, examples) of one site from the global `parameters`."""
    _, train_split, _ = load_site(partition)
    model = _file_model(config, train_split.x.shape[1], parameters)
    train_round(model, train_split, config)
    return _state(model), len(train_split.y)


class _SiteClient(NumPyClient):
    """One site of a file experiment, answering Flower's legacy fit and evaluate."""

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        trained, n = site_update(config, self.partition, parameters)
        return trained, n, {}

    def evaluate(self, parameters, config):
        _, _, validation = load_site(self.partition)
        model = _file_model(config, validation.x.shape[1], parameters)
        metrics = binary.evaluate(model, validation)
        kept = {"auroc": metrics["auroc"], "accuracy": metrics["accuracy"]}
        return metrics["loss"], len(validation.y), kept


def _client(context: Context):
    return _SiteClient(int(context.node_config["partition-id"])).to_client()


#: The ClientApp of file experiments under SecAgg+.
client_app = ClientApp(client_fn=_client, mods=[secaggplus_mod])


class _TaskClient(NumPyClient):
    """A site running a project's task under SecAgg+, with the same checks as flip.fl.client."""

    def __init__(self, context: Context) -> None:
        self.site = site_of(context)
        self.run = context.run_id
        self.hub_runs = hub_runs_only(context)

    def _authorised(self, parameters, config) -> tuple[TaskSpec, dict[str, np.ndarray]]:
        spec = authorise(self.site, config, secure=True, hub_runs=self.hub_runs)
        if spec.kind == "custom":  # its code runs only in the sandbox, which loads by order
            return spec, {str(i): array for i, array in enumerate(parameters)}
        return spec, dict(zip(new_model(spec).state_dict(), parameters, strict=True))

    def get_properties(self, config):
        spec = authorise(self.site, config, secure=True, hub_runs=self.hub_runs)
        return {"stats": json.dumps(share_stats(self.site, spec, config))}

    def fit(self, parameters, config):
        spec, state = self._authorised(parameters, config)
        trained, metrics = site_train_round(self.site, spec, config, state, run=self.run)
        arrays = [v.detach().numpy().copy() for v in trained.values()]
        return arrays, int(metrics["num-examples"]), {}

    def evaluate(self, parameters, config):
        spec, state = self._authorised(parameters, config)
        metrics = evaluate_round(self.site, spec, config, state, run=self.run)
        kept = {k: v for k, v in metrics.items() if k not in ("loss", "num-examples")}
        kept["site"] = self.site.name
        reported = report_evaluation(self.site, spec, config)
        return metrics["loss"], int(metrics["num-examples"]), {**kept, **reported}


def _task_client(context: Context):
    return _TaskClient(context).to_client()


#: The ClientApp of project tasks that ask for secure aggregation.
task_client_app = ClientApp(client_fn=_task_client, mods=[secaggplus_mod])


class _ObservedGrid:
    """A Grid that shows `observe` every message the server sends, then every reply it gets."""

    def __init__(self, grid: Grid, observe: Callable[[Message], None]) -> None:
        self._grid = grid
        self._observe = observe

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        for message in messages:
            self._observe(message)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            self._observe(reply)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def _weighted(results) -> dict[str, Scalar]:
    total = sum(n for n, _ in results) or 1
    numbers = {k for _, m in results for k, v in m.items() if isinstance(v, int | float)}
    keys = numbers - set(REPORTED)
    return {k: sum(n * float(m[k]) for n, m in results if k in m) / total for k in keys}


def _sharing(n_sites: int) -> tuple[int | float, int | float]:
    """(num_shares, reconstruction_threshold): each site secret-shares its mask seeds with
    up to SHARES sites, any all-but-one of which can rebuild them (so one may drop out);
    two sites share with each other and both must stay (Flower wants integers above 2)."""
    if n_sites < 3:
        return 1.0, 1.0
    shares = min(n_sites, SHARES)
    return shares, shares - 1


def secure_server_app(
    config: dict[str, Scalar],
    initial: dict[str, torch.Tensor],
    *,
    rounds: int,
    n_sites: int,
    on_round: Callable[[int, dict[str, float]], None] | None = None,
    observe: Callable[[Message], None] | None = None,
    scaling: ScalingStep | None = None,
) -> tuple[ServerApp, FederatedResult]:
    """A ServerApp running FedAvg under SecAgg+ over all `n_sites` sites from the `initial`
    state dict, and its result.

    `observe`, if given, sees each message the server sends and receives (benchmarks
    count their bytes; tests check what a site's reply reveals). `scaling`, if given,
    runs before round 1 and its result goes to the sites in `config["scaling"]`.
    """
    result = FederatedResult()

    class _Reporting(FedAvg):
        def aggregate_evaluate(self, server_round, results, failures):
            loss, metrics = super().aggregate_evaluate(server_round, results, failures)
            numbers = {"loss": float(loss or 0.0), **{k: float(v) for k, v in metrics.items()}}
            result.rounds.append(numbers)
            result.per_site = {
                str(res.metrics["site"]): {
                    **{
                        k: v for k, v in outcomes.reported(res.metrics).items() if k not in REPORTED
                    },
                    "n_test": None,
                    **{k: res.metrics[k] for k in REPORTED if k in res.metrics},
                }
                for _, res in results
                if "site" in res.metrics
            }
            if on_round:
                on_round(server_round, numbers)
            return loss, metrics

    strategy = _Reporting(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=n_sites,
        min_evaluate_clients=n_sites,
        min_available_clients=n_sites,
        initial_parameters=ndarrays_to_parameters([v.numpy().copy() for v in initial.values()]),
        on_fit_config_fn=lambda r: {**config, "server-round": r},
        # The last round's evaluation is the final one: of the test split, not validation.
        on_evaluate_config_fn=lambda r: {
            **config,
            "server-round": r,
            **({EVALUATE_SPLIT: "test"} if r == rounds else {}),
        },
        evaluate_metrics_aggregation_fn=_weighted,
    )
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if scaling is not None:
            result.scaling = scaling(grid)
            config["scaling"] = result.scaling.model_dump_json()
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                *_sharing(n_sites),
                clipping_range=CLIPPING_RANGE,
                max_weight=MAX_WEIGHT,
            )
        )
        workflow(_ObservedGrid(grid, observe) if observe else grid, legacy)
        final = legacy.state.array_records["parameters"].to_numpy_ndarrays()
        names = initial
        result.state_dict = {k: torch.from_numpy(v) for k, v in zip(names, final, strict=True)}

    return app, result
