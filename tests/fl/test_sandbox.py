"""A custom task's own train and evaluate run in a limited child process without network."""

import os
import socket
import time

import numpy as np
import pytest
import torch

from flip.data.features.tabular import TabularData
from flip.fl.registry import RegistryError, build, predict, register
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


# --- the reviewer's escapes (issue 20): the audit hook alone let each of these through ---


@pytest.fixture
def marks(tmp_path):
    """A folder anyone may write in: only the kernel's confinement keeps the task out."""
    folder = tmp_path / "marks"
    folder.mkdir()
    folder.chmod(0o777)
    tmp_path.chmod(0o755)
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the worker drops to nobody")
def test_ctypes_fork_exec_a_0600_file_and_the_hosts_network_are_out_of_reach(marks, tmp_path):
    secret = tmp_path / "ledger.db"
    secret.write_text("audit")
    secret.chmod(0o600)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = f"""
    import ctypes, os, socket, _posixsubprocess
    api = ctypes.pythonapi
    got = {{"system": api.system(b"echo ran > {marks}/system")}}
    r, w = os.pipe()
    args = [b"/bin/sh", b"-c", b"echo ran > {marks}/fork_exec"]
    try:
        pid = _posixsubprocess.fork_exec(args, [args[0]], True, (), None, None, -1, -1, -1, -1,
            -1, -1, r, w, True, False, -1, None, None, -1, -1, None, False)
        os.waitpid(pid, 0)
        got["fork_exec"] = 0.0
    except OSError:
        got["fork_exec"] = -1.0
    try:
        open("{secret}").read()
        got["read"] = 1.0
    except OSError:
        got["read"] = 0.0
    try:
        got["setns"] = api.setns(os.open("/proc/{os.getpid()}/ns/net", os.O_RDONLY), 0x40000000)
    except OSError:
        got["setns"] = -1.0
    fd = api.socket(2, 1, 0)
    address = (2).to_bytes(2, "little") + ({port}).to_bytes(2, "big")
    address += bytes([127, 0, 0, 1]) + bytes(8)
    got["connect"] = api.connect(fd, address, 16)
    return got
"""
    try:
        state = {"weight": np.zeros((1, 20), np.float32), "bias": np.zeros(1, np.float32)}
        _, got = train_task(_bad(probe), state, _data(), epochs=1, seed=0)
    finally:
        server.close()
    assert not list(marks.iterdir()), "no process ran: neither libc system() nor fork_exec"
    assert got["system"] != 0 and got["fork_exec"] != 0
    assert got["read"] == 0, "a 0600 site file is closed to the task"
    assert got["setns"] != 0 and got["connect"] != 0, "no way back into the host's network"


def test_a_setsid_grandchild_dies_at_the_wall_clock_limit(marks):
    daemon = f"""
    import _posixsubprocess, os, time
    r, w = os.pipe()
    args = [b"/bin/sh", b"-c", b"while true; do date +%s%N > {marks}/alive; sleep 0.1; done"]
    try:
        _posixsubprocess.fork_exec(args, [args[0]], True, (), None, None, -1, -1, -1, -1,
            -1, -1, r, w, True, True, -1, None, None, -1, -1, None, False)
    except OSError:
        pass
    time.sleep(60)
    return {{}}
"""
    state = {"weight": np.zeros((1, 20), np.float32), "bias": np.zeros(1, np.float32)}
    started = time.monotonic()
    with pytest.raises(SandboxRefused, match="ran past its 3 s limit"):
        train_task(_bad(daemon), state, _data(), epochs=1, seed=0, limits=Limits(3, 4096))
    assert time.monotonic() - started < 3 + 30, "stopped at the limit, not at the daemon's end"
    alive = marks / "alive"
    last = alive.read_text() if alive.exists() else None
    time.sleep(0.5)  # a survivor would rewrite its mark every 0.1 s
    assert (alive.read_text() if alive.exists() else None) == last, "a process outlived the limit"


def test_what_comes_back_is_exactly_the_weights_sent_finite_and_a_short_reason():
    sent = {"weight": np.zeros((1, 20), np.float32), "bias": np.zeros(1, np.float32)}
    keeps = _bad("    return {'loss': 0.0}\n")
    with pytest.raises(SandboxRefused, match="no weights were sent"):
        train_task(keeps, {}, _data(), epochs=1, seed=0)
    doubled = _bad("    model.double()\n    return {'loss': 0.0}\n")
    with pytest.raises(SandboxRefused, match="other names, shapes or dtypes"):
        train_task(doubled, sent, _data(), epochs=1, seed=0)
    nan = _bad(
        "    with torch.no_grad():\n"
        "        model.weight.fill_(float('nan'))\n"
        "    return {'loss': 0.0}\n"
    )
    with pytest.raises(SandboxRefused, match="NaN or infinite weights"):
        train_task(nan, sent, _data(), epochs=1, seed=0)
    rows = _bad(
        "    import json, os\n"
        "    text = json.dumps({'reason': str(x.tolist())}).encode()\n"
        "    for fd in range(3, 16):\n"
        "        try:\n"
        "            os.pwrite(fd, text, 0)\n"
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(1)\n"
    )
    with pytest.raises(SandboxRefused) as refused:
        train_task(rows, sent, _data(), epochs=1, seed=0)
    assert len(str(refused.value)) <= 500 + 200, "at most 500 characters of the task's text"


# --- custom code outside a round: the hub's first weights, a site's scoring ---


def _noisy(folder) -> TaskSpec:
    """A custom task whose code, when loaded, leaves a file in `folder` if it can."""
    code = (
        "import os\n"
        "try:\n"
        f"    open({str(folder / 'ran')!r}, 'w').write(str(os.getuid()))\n"
        "except OSError:\n"
        "    pass\n" + MODEL
    )
    return TaskSpec.model_validate(
        {**mace_task(scaling="fixed").model_dump(), "kind": "custom", "code": code, "rounds": 1}
    )


def test_the_server_builds_a_custom_tasks_first_weights_in_the_sandbox(tmp_path):
    from flip.fl.server import task_server_app

    spec = _noisy(tmp_path)
    task_server_app("p", spec, rounds=1, n_sites=1)
    assert not (tmp_path / "ran").exists(), "the code ran confined, not in the server"


def test_a_registered_custom_model_scores_only_in_the_sandbox(tmp_path):
    spec = _noisy(tmp_path)
    state = torch.nn.Linear(spec.data.width, 1).state_dict()
    lineage = {"task": "custom", "task_spec": spec.model_dump(mode="json"), "task_hash": "h"}
    record = register(tmp_path / "registry", "custom", state, lineage)
    x = np.zeros((3, spec.data.width), np.float32)
    with pytest.raises(RegistryError, match="runs only in the sandbox"):
        predict(record, x)
    with pytest.raises(RegistryError, match="runs only in the sandbox"):
        build(record)
    scores = predict(record, x, sandbox=Limits(60, 4096))
    assert scores.shape == (3,) and np.allclose(scores, 1 / (1 + np.exp(-state["bias"][0].item())))
    assert not (tmp_path / "ran").exists()


def test_a_custom_task_stopped_in_its_sandbox_is_an_audited_refusal_at_the_site(tmp_path):
    """The site's ClientApp turns a sandbox's refusal (here: train opens a socket) into its
    own audited refusal with the reason, for training and evaluation alike, rather than let
    it escape unrecorded."""
    from flip.config import SiteConfig
    from flip.data.ledger import Ledger
    from flip.fl.client import NotApproved, app
    from tests.conftest import build_site
    from tests.security.messages import node_context, task_message

    yaml = build_site(tmp_path, "alpha", "csv", 160)
    config = SiteConfig.load(yaml)
    config.policy.allowed_task_kinds = ["custom"]
    config.save(yaml)
    code = MODEL + (
        "\n\ndef train(model, x, y, config, device):\n"
        "    import socket\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "    return {}\n"
        "\n\ndef evaluate(model, x, y, config, device):\n"
        "    import socket\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
        "    return {}\n"
    )
    spec = TaskSpec.model_validate(
        {**mace_task(scaling="fixed").model_dump(), "kind": "custom", "code": code}
    )
    Ledger(config.ledger).decide("p", task_hash(spec), "approved", by="admin")
    state = {"weight": torch.zeros(1, 20), "bias": torch.zeros(1)}
    for kind in ("train", "evaluate"):
        message = task_message(kind, spec, run=5, arrays=state)
        with pytest.raises(NotApproved, match="may not use the network"):
            app(message, node_context(yaml, run=5))
    with Ledger(config.ledger) as ledger:
        refused = [d for _, d in ledger.chained(frozenset({"run.refused"}))]
    assert len([d for d in refused if "network" in d["reason"]]) == 2
