"""The bare Flower app `flip bench fl` times `flip fl run` against, run as its own process."""

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_the_bare_app_as_a_script_trains_and_evaluates_every_round(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(2):
        x = rng.normal(size=(40, 3)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.float32)
        np.savez(tmp_path / f"site-{index}.npz", train_x=x, train_y=y, test_x=x, test_y=y)
    settings = {"n-sites": 2, "n-features": 3, "rounds": 2, "learning-rate": 0.1, "l2": 0.0}
    settings |= {"batch-size": 8, "local-epochs": 2}
    result = subprocess.run(
        [sys.executable, "-m", "flip.bench.bare_flower", str(tmp_path), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # Every round's evaluation came back from both sites: no message failed in Ray's actors.
    line = [x for x in result.stdout.splitlines() if x.startswith('{"accuracy"')][-1]
    accuracy = json.loads(line)["accuracy"]
    assert len(accuracy) == 2
    assert accuracy[-1] > 0.7
    assert "exception was raised" not in result.stderr
