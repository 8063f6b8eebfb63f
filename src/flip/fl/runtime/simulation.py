"""The simulation runtime: Flower's simulation engine (Ray), one virtual SuperNode per site."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from flip.fl.runtime.supervised_grid import SITE_ERRORS, SupervisedGrid

#: Set to 1 to see Flower's and Ray's own log of a simulation (quiet otherwise).
VERBOSE_ENV = "FLIP_FL_VERBOSE"

#: Ray's niceness of its worker processes (the sites' ClientApps); Ray's own default is 15.
WORKER_NICENESS_ENV = "RAY_worker_niceness"

#: What a user can check when Flower's simulation engine fails.
HINT = (
    "hint: Ray needs free memory in /dev/shm and /tmp and no RAY_ADDRESS naming another "
    f"cluster; {VERBOSE_ENV}=1 shows Flower's and Ray's own log"
)


class SimulationError(RuntimeError):
    """Flower's simulation engine (Ray) failed to start or died mid-run: one line and a hint."""


@contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with _ray_messages_to_log():
            yield
    finally:
        logger.setLevel(level)


@contextmanager
def _ray_messages_to_log() -> Iterator[None]:
    """Log at debug level what Ray's processes publish to the driver (a raylet's end with
    the tail of its log, `[state-dump]` lines and all; a worker's death), which Ray's driver
    prints to stdout from a thread of its own whatever `log_to_driver` says."""
    from ray._private import worker

    printer = worker.print_to_stdstream
    logger = logging.getLogger("flip.fl.ray")

    def to_log(data: dict, ignore_prefix: bool) -> None:
        for line in data.get("lines", []):
            logger.debug("(%s) %s", data.get("pid"), line)

    worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        worker.print_to_stdstream = printer


def run_in_simulation(
    server_app: ServerApp,
    client_app: ClientApp,
    num_nodes: int,
    *,
    cpus: int | None = None,
    verbose: bool = False,
    site_errors_fatal: bool = False,
) -> None:
    """Run `server_app` with `num_nodes` virtual SuperNodes of `client_app` on `cpus` cores.

    Raises `SimulationError` within a round's pull interval when the engine fails to start
    or dies, or when no site answers a round; with `site_errors_fatal`, also when a site's
    ClientApp raises (otherwise its reply is left out, as a refusal is). Unless `verbose`,
    Flower's log and what Ray's processes publish to the driver stay off the terminal.
    """
    from flwr.simulation import run_simulation

    cpus = cpus or os.cpu_count() or 1
    verbose = verbose or os.environ.get(VERBOSE_ENV) == "1"
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
    # Ray runs its workers at nice 15: on a shared machine the sites' training, the run's
    # whole work, would wait behind every other process.
    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    grids: list[SupervisedGrid] = []
    supervised = ServerApp()

    @supervised.main()
    def main(grid: Grid, context: Context) -> None:
        threads.append(threading.current_thread())
        tolerated = () if site_errors_fatal else SITE_ERRORS
        grids.append(SupervisedGrid(grid, stop, tolerated=tolerated))
        server_app(grid=grids[0], context=context)

    try:
        with nullcontext() if verbose else _quiet():
            run_simulation(supervised, client_app, num_nodes, backend_config=backend_config)
    except Exception as exc:
        failure = grids[0].failure if grids else None
        raise SimulationError(f"{failure or _engine_failure(exc)}; {HINT}") from exc
    finally:
        stop.set()  # a ServerApp thread the engine left waiting stops at its next pull
        for thread in threads:
            thread.join(timeout=30)


def _engine_failure(exc: BaseException) -> str:
    """What made Flower's runtime fail: the innermost cause, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return f"Flower's simulation engine (Ray) failed: {type(exc).__name__}: " + (
        lines[0] if lines else "no reason given"
    )


def simulate(
    server_app: ServerApp,
    site_configs: list[Path],
    *,
    secure: bool = False,
    cpus: int | None = None,
    verbose: bool = False,
    client_app: ClientApp | None = None,
) -> None:
    """Run `server_app` with one virtual site per site.yaml, on `cpus` cores (default: all).

    The sites run FLIP's site ClientApp (`flip.fl.client`), or `client_app` (one that
    finds its site the same way); with `secure`, the SecAgg+ ClientApp (for tasks that
    ask for it).
    """
    from flip.fl.client import SIM_SITES_ENV
    from flip.fl.client import app as client

    os.environ[SIM_SITES_ENV] = json.dumps([str(p.resolve()) for p in site_configs])
    if client_app is not None:
        client = client_app
    if secure:
        from flip.fl.secure_aggregation import task_client_app as client
    run_in_simulation(server_app, client, len(site_configs), cpus=cpus, verbose=verbose)
