"""The simulation runtime runs the sites' ClientApps at the driver's priority, not at the
nice 15 Ray gives its workers, unless the user asked Ray for another niceness."""

import os

import pytest
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from flip.fl.runtime.simulation import WORKER_NICENESS_ENV, run_in_simulation


@pytest.fixture
def engine_env(monkeypatch):
    """The niceness Ray's workers would be started with (the engine itself does not run)."""
    seen: list[str | None] = []

    def fake_run_simulation(*args, **kwargs) -> None:
        seen.append(os.environ.get(WORKER_NICENESS_ENV))

    monkeypatch.setattr("flwr.simulation.run_simulation", fake_run_simulation)
    return seen


def test_ray_workers_run_at_normal_priority(monkeypatch, engine_env):
    monkeypatch.delenv(WORKER_NICENESS_ENV, raising=False)
    run_in_simulation(ServerApp(), ClientApp(), 1)
    assert engine_env == ["0"]


def test_a_niceness_the_user_set_is_kept(monkeypatch, engine_env):
    monkeypatch.setenv(WORKER_NICENESS_ENV, "10")
    run_in_simulation(ServerApp(), ClientApp(), 1)
    assert engine_env == ["10"]
