"""Custom task code runs here: in a child process with time and memory limits and no network.

The site calls `run_custom` only for a task it approved. The child gets the task, the
global weights and the site's arrays in a private folder, builds the model from the
task's code and trains or evaluates it: with the task's own `train`/`evaluate` when its
code defines them, else with FLIP's loop for the task's outcome. Before the task's code
runs, the child leaves the network (a new network namespace where the kernel allows it)
and refuses sockets, subprocesses and native-library loading (a Python audit hook),
and its CPU time and address space are capped (`resource.setrlimit`); the parent stops
it at the wall-clock limit. Only weights (of the shapes sent) and a few named numbers
come back, read with `torch.load(weights_only=True)`: no pickled objects.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: At most this many metrics come back from a custom evaluate or train.
MAX_METRICS = 32
#: Seconds the child may take to start (import torch, read its inputs) before its limit runs.
STARTUP_SECONDS = 300.0
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
#: Audit events refused once the task's code may run: the network, new processes, native code.
_REFUSED = (
    "socket.",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "ctypes.dlopen",
)

Action = Literal["train", "evaluate"]


@dataclass(frozen=True)
class Limits:
    """What a custom task's process may use: wall-clock (and CPU) seconds, memory in MB."""

    seconds: float = 900.0
    memory_mb: int = 4096


class SandboxRefused(RuntimeError):
    """The custom code was stopped at a limit, touched what it may not, or failed."""


def run_custom(
    action: Action,
    spec_json: str,
    state: dict[str, Any] | None,
    x: Any,
    y: Any,
    config: dict[str, float | int | str],
    *,
    device: str = "cpu",
    limits: Limits = Limits(),
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """Train or evaluate an approved custom task in a limited child process: the trained
    weights (None for evaluate) and the metrics, with `num-examples` set by the site."""
    import torch

    name = json.loads(spec_json).get("name", "custom task")
    with tempfile.TemporaryDirectory(prefix="flip-sandbox-") as folder:
        work = Path(folder)
        (work / "task.json").write_text(spec_json, encoding="utf-8")
        inputs = {"x": torch.as_tensor(x), "y": torch.as_tensor(y), "config": config}
        sent = {k: torch.as_tensor(v) for k, v in (state or {}).items()}
        torch.save({**inputs, "state": sent}, work / "in.pt")
        _run_child(work, action, device, limits, name)
        out = torch.load(work / "out.pt", weights_only=True)
    metrics = _checked_metrics(out.get("metrics"), name)
    metrics["num-examples"] = float(len(y))
    if action == "evaluate":
        return None, metrics
    metrics.setdefault("train_loss", metrics.get("loss", float("nan")))
    returned = out.get("state")
    if state and (
        not isinstance(returned, dict)
        or [tuple(v.shape) for v in returned.values()]
        != [tuple(torch.as_tensor(v).shape) for v in state.values()]
    ):
        raise SandboxRefused(f"{name}: custom train returned weights of other shapes")
    return returned, metrics


def _run_child(work: Path, action: Action, device: str, limits: Limits, name: str) -> None:
    command = [
        sys.executable,
        "-m",
        "flip.fl.tasks.sandbox",
        str(work),
        action,
        device,
        repr(float(limits.seconds)),
        str(int(limits.memory_mb)),
    ]
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], STARTUP_SECONDS)
        if ready and child.stdout is not None:
            child.stdout.readline()
        try:
            child.wait(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            raise SandboxRefused(
                f"{name}: custom {action} ran past its {limits.seconds:g} s limit: stopped"
            ) from None
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    if child.returncode == 0:
        return
    error = work / "error.json"
    if error.exists():
        reason = json.loads(error.read_text(encoding="utf-8"))["reason"]
    elif child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        reason = f"used more than its {limits.seconds:g} s of CPU time: stopped"
    else:
        reason = (stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
    raise SandboxRefused(f"{name}: custom {action} refused: {reason}")


def _checked_metrics(found: object, name: str) -> dict[str, float]:
    """A dict of at most MAX_METRICS short names to finite numbers, or a refusal."""
    if not isinstance(found, dict) or len(found) > MAX_METRICS:
        raise SandboxRefused(f"{name}: metrics must be a dict of at most {MAX_METRICS} numbers")
    checked: dict[str, float] = {}
    for key, value in found.items():
        number = float(value) if isinstance(value, int | float) else math.nan
        if not isinstance(key, str) or len(key) > 64 or not math.isfinite(number):
            raise SandboxRefused(f"{name}: metric {key!r} is not a finite number with a short name")
        checked[key] = number
    return checked


# --- the child -----------------------------------------------------------------------


def _leave_network() -> None:
    """Move into a new, empty network namespace (as root, or in a new user namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            return


def _guard(event: str, _args: tuple) -> None:
    if event.startswith(_REFUSED):
        raise PermissionError(
            f"custom task code may not use the network or start processes ({event})"
        )


def _limit(device: str, seconds: float, memory_mb: int) -> None:
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    memory = memory_mb * 2**20
    kind = resource.RLIMIT_AS if device == "cpu" else resource.RLIMIT_DATA  # CUDA maps widely
    resource.setrlimit(kind, (memory, memory))


def _child(work: Path, action: Action, device_name: str, seconds: float, memory_mb: int) -> int:
    _leave_network()
    import numpy as np
    import torch

    from flip.data.features.tabular import TabularData
    from flip.fl.tasks import training
    from flip.fl.tasks.base import TaskSpec
    from flip.fl.tasks.binary import load_arrays
    from flip.fl.tasks.models import load_custom, new_model

    spec = TaskSpec.model_validate_json((work / "task.json").read_text(encoding="utf-8"))
    given = torch.load(work / "in.pt", weights_only=True)
    x, y, config = given["x"].numpy(), given["y"].numpy(), given["config"]
    device = torch.device(device_name)
    _limit(device.type, seconds, memory_mb)
    print("ready", flush=True)
    sys.addaudithook(_guard)
    started = time.monotonic()
    try:
        module = load_custom(spec)
        model = new_model(spec)
        if given["state"]:
            load_arrays(model, given["state"])
        own = getattr(module, action, None)
        if own is not None:
            metrics = dict(own(model, x, y, config, device))
        elif action == "train":
            data = TabularData(np.arange(len(y)), x, y, [])
            settings = {k: config[k] for k in ("epochs", "learning_rate", "batch_size", "l2")}
            metrics = training.train(
                model,
                data,
                **settings,
                seed=int(config["seed"]),
                proximal_mu=float(config.get("proximal_mu", 0.0)),
                outcome=str(config["outcome"]),
                device=device,
            )
        else:
            data = TabularData(np.arange(len(y)), x, y, [])
            metrics = training.evaluate(model, data, str(config["outcome"]), device)
        out = {"metrics": metrics}
        if action == "train":
            out["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(out, work / "out.pt")
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "alloc" not in str(exc):
            return _failed(work, f"{type(exc).__name__}: {exc}")
        return _failed(work, f"ran out of its {memory_mb} MB memory limit: stopped")
    except PermissionError as exc:
        return _failed(work, str(exc))
    except Exception as exc:  # the task's own error, named for the site's log
        took = time.monotonic() - started
        return _failed(work, f"{type(exc).__name__}: {exc} (after {took:.1f} s)")
    return 0


def _failed(work: Path, reason: str) -> int:
    (work / "error.json").write_text(json.dumps({"reason": reason[:500]}), encoding="utf-8")
    return 1


if __name__ == "__main__":
    folder, what, where, limit_seconds, limit_mb = sys.argv[1:6]
    sys.exit(_child(Path(folder), what, where, float(limit_seconds), int(limit_mb)))  # type: ignore[arg-type]
