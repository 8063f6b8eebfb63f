"""The simulation runtime: Flower's simulation engine (Ray), one virtual SuperNode per site."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp


@contextmanager
def _quiet_flower() -> Iterator[None]:
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_in_simulation(
    server_app: ServerApp,
    client_app: ClientApp,
    num_nodes: int,
    *,
    cpus: int | None = None,
    verbose: bool = False,
) -> None:
    """Run `server_app` with `num_nodes` virtual SuperNodes of `client_app` on `cpus` cores."""
    from flwr.simulation import run_simulation

    cpus = cpus or os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "include_dashboard": False,
            "logging_level": logging.INFO if verbose else logging.ERROR,
            "log_to_driver": verbose,
        },
    }
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if verbose:
        run_simulation(server_app, client_app, num_nodes, backend_config=backend_config)
        return
    with _quiet_flower():
        run_simulation(server_app, client_app, num_nodes, backend_config=backend_config)


def simulate(
    server_app: ServerApp,
    site_configs: list[Path],
    *,
    secure: bool = False,
    cpus: int | None = None,
    verbose: bool = False,
) -> None:
    """Run `server_app` with one virtual site per site.yaml, on `cpus` cores (default: all).

    With `secure`, the sites run the SecAgg+ ClientApp (for tasks that ask for it).
    """
    from flip.fl.client import SIM_SITES_ENV
    from flip.fl.client import app as client

    os.environ[SIM_SITES_ENV] = json.dumps([str(p.resolve()) for p in site_configs])
    if secure:
        from flip.fl.secure_aggregation import task_client_app as client
    run_in_simulation(server_app, client, len(site_configs), cpus=cpus, verbose=verbose)
