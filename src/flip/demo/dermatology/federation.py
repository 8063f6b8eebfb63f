"""The dermatology models trained federated on Flower: FLIP's ServerApp (FedAvg, rounds,
federated scaling) and the dermatology ClientApp at every site, in Flower's simulation
engine (one virtual SuperNode per site). Each site's ClientApp checks the task against its
own ledger before it reads a row; only trainable arrays and metrics come back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from flip.fl.dermatology_client import app as client_app
from flip.fl.preprocessing import scaling_of
from flip.fl.runtime.simulation import simulate
from flip.fl.server import FederatedResult, make_server_app, stats_query
from flip.fl.tasks.dermatology import new_model
from flip.fl.tasks.dermatology_task import DermatologyTask, Model

MODELS: tuple[Model, ...] = ("biomarker", "response")
#: Seconds a round waits for the sites' replies.
ROUND_TIMEOUT = 600.0

#: on_round(model, round number, the round's score over every site's test rows).
RoundCallback = Callable[[Model, int, float], None]


def federate(
    project: str,
    task: DermatologyTask,
    digest: str,
    site_configs: list[Path],
    on_round: RoundCallback | None = None,
) -> dict[Model, FederatedResult]:
    """Train both models for the task's rounds over the sites of `site_configs` (their
    site.yaml files) in one Flower simulation; each model's final arrays, scaling (response)
    and per-round scores."""
    n_sites = len(site_configs)
    apps: dict[Model, ServerApp] = {}
    results: dict[Model, FederatedResult] = {}
    for model in MODELS:
        config = ConfigRecord(
            {
                "project": project,
                "task": task.model_dump_json(),
                "task-hash": digest,
                "model": model,
            }
        )
        recipe = task.recipe(model)
        adapter = task.text.adapter if recipe.n_text else None
        initial = new_model(recipe.n_features, recipe.n_text, recipe.image, task.seed, adapter)

        def scored(number: int, metrics: dict[str, float], model: Model = model) -> None:
            n = metrics.get("score-n", 0.0)
            if on_round is not None:
                on_round(model, number, metrics["score-sum"] / n if n else float("nan"))

        apps[model], results[model] = make_server_app(
            config,
            ArrayRecord(initial.state_dict()),
            rounds=task.rounds,
            n_sites=n_sites,
            strategy="fedavg",
            on_round=scored,
            timeout=ROUND_TIMEOUT,
            scaling=_scaling(config, task, n_sites) if model == "response" else None,
            seed=task.seed,
            evaluate_final=False,
        )

    both = ServerApp()

    @both.main()
    def main(grid: Grid, context: Context) -> None:
        for model in MODELS:
            apps[model](grid=grid, context=context)

    simulate(both, site_configs, client_app=client_app)
    return results


def _scaling(config: ConfigRecord, task: DermatologyTask, n_sites: int):
    """The step that asks every site for its training features' sums and counts (a query
    before round 1) and standardises every site's features alike from them."""
    asked = ConfigRecord({**config, "server-round": 0})
    names = list(task.features)

    def step(grid: Grid):
        return scaling_of(stats_query(grid, asked, len(names), n_sites, ROUND_TIMEOUT), names)

    return step
