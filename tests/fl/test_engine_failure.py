"""Flower's simulation engine (Ray) failing: `flip fl run` and the simulation runtime stop
within a bounded time with one line and a hint, never hang or report untrained rounds."""

import os
import subprocess
import sys
import time

import pytest
from flwr.app import ConfigRecord

from tests.fl.messy import write_sites


def test_fl_run_fails_in_one_line_when_ray_cannot_start_and_leaves_no_checkpoint(tmp_path):
    sites = write_sites(tmp_path / "sites")
    folder = tmp_path / "run"
    site_args = [a for name, path in sites.items() for a in ("--site", f"{name}={path}")]
    # RAY_ADDRESS names a cluster that is not there: Ray refuses to start in this process.
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}
    started = time.monotonic()
    options = ["--target", "num", "--positive", "num>0", "--rounds", "2", "--checkpoint"]
    result = subprocess.run(
        [sys.executable, "-m", "flip", "fl", "run", *site_args, *options, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,  # the round timeout is 600 s: a hang fails here
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert time.monotonic() - started < 180
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Flower's simulation engine (Ray) failed: ValueError:"), last
    assert "hint:" in last and "RAY_ADDRESS" in last
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not folder.exists()  # nothing to resume, so nothing written


@pytest.mark.slow
def test_a_ray_actor_dying_mid_run_stops_the_run_at_that_round():
    import torch
    from flwr.app import ArrayRecord

    from flip.fl.runtime.simulation import SimulationError, run_in_simulation
    from flip.fl.server import make_server_app
    from tests.fl.dying_app import app as dying_client

    start = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(start.weight)
    rounds = []
    app, _ = make_server_app(
        ConfigRecord({"task": "dying", "die-at": 2}),
        ArrayRecord(start.state_dict()),
        rounds=6,
        n_sites=2,
        on_round=lambda number, metrics: rounds.append(number),
        evaluate_final=False,
    )
    started = time.monotonic()
    with pytest.raises(SimulationError) as raised:
        run_in_simulation(app, dying_client, 2)
    assert time.monotonic() - started < 300
    message = str(raised.value)
    assert "\n" not in message and "hint:" in message
    assert message.startswith("the simulation engine failed:") and "ActorDiedError" in message
    # Round 1 was trained by both sites; no later round is reported as if it had been.
    assert rounds == [1]


@pytest.mark.slow
def test_what_rays_processes_publish_to_the_driver_stays_off_the_terminal(capfd):
    """Ray's driver prints whatever its processes publish (a raylet's end with the tail of
    its log, `[state-dump]` lines and all; a worker's death) to stdout from a thread of its
    own, whatever `log_to_driver` says: `flip fl run` printed pages of it."""
    import ray
    from flwr.serverapp import ServerApp
    from ray._private import ray_constants
    from ray._private.utils import publish_error_to_driver

    from flip.fl.runtime.simulation import run_in_simulation
    from tests.fl.dying_app import app as client

    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:
        deadline = time.monotonic() + 120
        while not ray.is_initialized() and time.monotonic() < deadline:
            time.sleep(0.1)
        publish_error_to_driver(
            ray_constants.RAYLET_DIED_ERROR,
            "Raylet is terminated. Termination is unexpected. Last 20 lines of the Raylet "
            "logs:\n[state-dump] NodeManager:\n[state-dump] Node ID: 64af838a",
            gcs_client=ray._private.worker.global_worker.gcs_client,
        )
        time.sleep(3)  # Ray's listener polls and prints within this

    run_in_simulation(server, client, 1)
    out, err = capfd.readouterr()
    assert "[state-dump]" not in out + err
    assert "Raylet is terminated" not in out + err
