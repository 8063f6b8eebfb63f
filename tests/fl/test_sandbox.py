"""A custom task's own train and evaluate run in a limited child process without network."""

import numpy as np
import pytest

from flip.data.features.tabular import TabularData
from flip.fl.tasks import TaskSpec, mace_task, task_hash
from flip.fl.tasks.runner import evaluate_task, train_task
from flip.fl.tasks.sandbox import Limits, SandboxRefused

pytestmark = pytest.mark.slow  # each call starts a process that imports torch

MODEL = """
import torch


def new_model(n_features, seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_features, 1)
"""

OWN_LOOP = '''

def train(model, x, y, config, device):
    """Full-batch steps of our own: a loop FLIP does not have."""
    model.to(device)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config["learning_rate"])
    for _ in range(config["epochs"] * 10):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xs).squeeze(1), ys)
        loss.backward()
        opt.step()
    return {"loss": float(loss), "steps": config["epochs"] * 10}


def evaluate(model, x, y, config, device):
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(x).to(device))).squeeze(1).cpu().numpy()
    return {"brier": float(((p - y) ** 2).mean()), "num-examples": 1e9}
'''


def _spec(code: str) -> TaskSpec:
    return TaskSpec.model_validate(
        {**mace_task().model_dump(), "kind": "custom", "code": code, "local_epochs": 2}
    )


def _data(n: int = 120) -> TabularData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    return TabularData(np.arange(n), x, y, [])


def _bad(body: str) -> TaskSpec:
    return _spec(MODEL + "\n\ndef train(model, x, y, config, device):\n" + body)


def test_the_tasks_own_train_and_evaluate_run_and_the_hash_covers_them():
    spec, data = _spec(MODEL + OWN_LOOP), _data()
    trained, metrics = train_task(spec, None, data, epochs=2, seed=0)
    assert metrics["steps"] == 20 and metrics["num-examples"] == 120
    assert set(trained) == {"weight", "bias"} and float(trained["weight"][0, 0]) > 0.5
    again, _ = train_task(spec, trained, data, epochs=2, seed=0)
    assert float(again["weight"][0, 0]) > float(trained["weight"][0, 0])
    scored = evaluate_task(spec, again, data)
    assert scored["brier"] < 0.15 and scored["num-examples"] == 120, "the site counts examples"
    assert task_hash(_spec(MODEL + OWN_LOOP.replace("* 10", "* 11"))) != task_hash(spec)


def test_without_its_own_train_a_custom_task_trains_with_flips_loop_for_its_outcome():
    trained, metrics = train_task(_spec(MODEL), None, _data(), epochs=3, seed=0)
    assert metrics["loss"] < np.log(2) and set(metrics) >= {"loss", "train_loss", "num-examples"}
    assert evaluate_task(_spec(MODEL), trained, _data())["auroc"] > 0.9


def test_a_custom_train_that_opens_a_socket_is_refused():
    spec = _bad(
        "    import socket\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "    return {}\n"
    )
    with pytest.raises(SandboxRefused, match="may not use the network"):
        train_task(spec, None, _data(), epochs=1, seed=0)
    spawn = _bad("    import subprocess\n    subprocess.run(['true'])\n    return {}\n")
    with pytest.raises(SandboxRefused, match="start processes"):
        train_task(spawn, None, _data(), epochs=1, seed=0)


def test_a_custom_train_over_its_memory_or_time_is_stopped():
    greedy = _bad("    block = bytearray(3 * 2**30)\n    return {'n': len(block)}\n")
    with pytest.raises(SandboxRefused, match="1024 MB memory limit"):
        train_task(greedy, None, _data(), epochs=1, seed=0, limits=Limits(60, 1024))
    slow = _bad("    import time\n    time.sleep(60)\n    return {}\n")
    with pytest.raises(SandboxRefused, match="ran past its 2 s limit"):
        train_task(slow, None, _data(), epochs=1, seed=0, limits=Limits(2, 4096))


def test_what_comes_back_is_bounded_numbers_and_weights_of_the_shapes_sent():
    rows = _bad("    return {f'row{i}': float(v) for i, v in enumerate(y)}\n")
    with pytest.raises(SandboxRefused, match="at most 32"):
        train_task(rows, None, _data(), epochs=1, seed=0)
    reshaped = _bad("    model.weight = torch.nn.Parameter(torch.zeros(1, 3))\n    return {}\n")
    state = {"weight": np.zeros((1, 20), np.float32), "bias": np.zeros(1, np.float32)}
    with pytest.raises(SandboxRefused, match="other names, shapes or dtypes"):
        train_task(reshaped, state, _data(), epochs=1, seed=0)
