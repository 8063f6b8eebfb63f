"""Custom task code runs here: in a confined child process with time and memory limits.

The site calls `run_custom` only for a task it approved. The sandbox's child reads the
task, the global weights and the site's arrays from a private folder, opens its output
files and closes every other descriptor, then leaves the host's network and PID namespaces
(`confinement`) and forks the worker that runs the task's code as PID 1 of the new PID
namespace: as root the worker becomes nobody (it can read no 0600 site file), else it runs
in a user namespace with tmpfs over the site's folders; no new privileges, and a seccomp
filter refuses exec, fork, namespaces and ptrace. A Python audit hook (sockets,
subprocesses, native libraries) is a second layer; CPU time and address space are capped,
and at the wall-clock limit the worker is killed with every process it started. If the
host cannot confine it, the code does not run, unless the site's policy opts into an
unconfined sandbox (weaker). Only weights (the names, shapes and float dtypes sent, all
finite) and a few named numbers come back, read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

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
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: At most this many metrics come back from a custom evaluate or train.
MAX_METRICS = 32
#: Seconds the child may take to start (import torch, read its inputs) before its limit runs.
STARTUP_SECONDS = 300.0
#: At most this many characters of the child's reason for failing reach the site's log.
MAX_REASON = 500
_UNCONFINED = (
    "this host cannot confine custom task code (network, PID and user isolation), so it "
    "does not run; a site may accept a weaker, unconfined sandbox with its policy's "
    "custom_unconfined"
)
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

Action = Literal["train", "evaluate", "init", "predict"]


@dataclass(frozen=True)
class Limits:
    """What a custom task's process may use: wall-clock (and CPU) seconds, memory in MB;
    the site's folders hidden from it (without root), and whether it may run unconfined."""

    seconds: float = 900.0
    memory_mb: int = 4096
    hidden: tuple[str, ...] = ()
    unconfined: bool = False


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
    """Train or evaluate an approved custom task in the sandbox from the weights sent: the
    trained weights (None for evaluate) and the metrics, with `num-examples` set by the site."""
    name = json.loads(spec_json).get("name", "custom task")
    if not state:
        raise SandboxRefused(f"{name}: no weights were sent for custom {action}: refused")
    sent = _float_state(state, name, "weight sent")
    out = _sandboxed(action, spec_json, sent, x, y, config, device, limits, name)
    metrics = _checked_metrics(out.get("metrics"), name)
    metrics["num-examples"] = float(len(y))
    if action == "evaluate":
        return None, metrics
    metrics.setdefault("train_loss", metrics.get("loss", float("nan")))
    return _checked_state(out.get("state"), sent, name), metrics


def initial_weights(spec_json: str, *, limits: Limits = Limits()) -> dict[str, Any]:
    """A fresh model's weights of an approved custom task, built by its code in the sandbox
    (finite float arrays only)."""
    import numpy as np

    name = json.loads(spec_json).get("name", "custom task")
    empty = np.zeros((0, 0), np.float32)
    out = _sandboxed("init", spec_json, {}, empty, np.zeros(0, np.float32), {}, "cpu", limits, name)
    found = out.get("state")
    if not isinstance(found, dict) or not found:
        raise SandboxRefused(f"{name}: its new_model has no weights")
    return _float_state(found, name, "initial weight")


def predict_custom(
    spec_json: str, state: dict[str, Any], x: Any, *, limits: Limits = Limits()
) -> Any:
    """Predicted probabilities of an approved custom task's model (weights `state`) for the
    rows of `x`, scored in the sandbox: one finite number in [0, 1] per row."""
    import numpy as np
    import torch

    name = json.loads(spec_json).get("name", "custom task")
    sent = _float_state(state, name, "weight")
    out = _sandboxed("predict", spec_json, sent, x, np.zeros(len(x)), {}, "cpu", limits, name)
    scores = out.get("predictions")
    if (
        not isinstance(scores, torch.Tensor)
        or tuple(scores.shape) != (len(x),)
        or not scores.is_floating_point()
        or not bool(((scores >= 0) & (scores <= 1)).all())
    ):
        raise SandboxRefused(f"{name}: custom predict did not return one probability per row")
    return scores.numpy()


def _sandboxed(
    action: Action,
    spec_json: str,
    sent: dict[str, Any],
    x: Any,
    y: Any,
    config: dict[str, float | int | str],
    device: str,
    limits: Limits,
    name: str,
) -> dict[str, Any]:
    import torch

    with tempfile.TemporaryDirectory(prefix="flip-sandbox-") as folder:
        work = Path(folder)
        (work / "task.json").write_text(spec_json, encoding="utf-8")
        inputs = {"x": torch.as_tensor(x), "y": torch.as_tensor(y), "config": config}
        torch.save({**inputs, "state": sent}, work / "in.pt")
        _run_child(work, action, device, limits, name)
        try:
            out = torch.load(work / "out.pt", weights_only=True)
        except Exception as exc:  # whatever the file holds, it is refused
            raise SandboxRefused(f"{name}: custom {action} wrote no readable result") from exc
    if not isinstance(out, dict):
        raise SandboxRefused(f"{name}: custom {action} wrote no readable result")
    return out


def _run_child(work: Path, action: Action, device: str, limits: Limits, name: str) -> None:
    settings = {
        "action": action,
        "device": device,
        "seconds": float(limits.seconds),
        "memory_mb": int(limits.memory_mb),
        "hidden": list(limits.hidden),
        "unconfined": limits.unconfined,
    }
    (work / "run.json").write_text(json.dumps(settings), encoding="utf-8")
    command = [sys.executable, "-m", "flip.fl.tasks.sandbox", str(work)]
    with open(work / "stdout.txt", "wb") as out, open(work / "stderr.txt", "wb") as err:
        child = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        child.wait(timeout=STARTUP_SECONDS + limits.seconds + 30)
    except subprocess.TimeoutExpired:
        raise SandboxRefused(
            f"{name}: custom {action} ran past its {limits.seconds:g} s limit: stopped"
        ) from None
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    if child.returncode != 0:
        reason = _reason(work, child.returncode, limits)
        raise SandboxRefused(f"{name}: custom {action} refused: {reason}")


def _reason(work: Path, returncode: int, limits: Limits) -> str:
    """Why the child failed, at most MAX_REASON characters of what it wrote."""
    error = work / "error.json"
    if error.exists() and error.stat().st_size:
        try:
            reason = json.loads(error.read_bytes()[: 4 * MAX_REASON])["reason"]
        except (ValueError, KeyError, TypeError):
            reason = "its error report is not one FLIP wrote"
        return str(reason)[:MAX_REASON]
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"used more than its {limits.seconds:g} s of CPU time: stopped"
    with open(work / "stderr.txt", "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4 * MAX_REASON))
        lines = handle.read().decode(errors="replace").strip().splitlines()
    return (lines or [f"exit status {returncode}"])[-1][:MAX_REASON]


def _checked_state(found: object, sent: dict[str, Any], name: str) -> dict[str, Any]:
    """The trained weights, under the names sent, if they have exactly the names (unless a
    strategy sent them by position), shapes and float dtypes sent, all finite; else a refusal."""
    import torch

    def layout(state: dict[str, Any]) -> list[tuple[tuple[int, ...], Any]]:
        return [(tuple(v.shape), v.dtype) for v in state.values()]

    by_position = all(key.isdigit() for key in sent)
    if (
        not isinstance(found, dict)
        or not all(isinstance(v, torch.Tensor) for v in found.values())
        or (not by_position and list(found) != list(sent))
        or layout(found) != layout(sent)
    ):
        raise SandboxRefused(
            f"{name}: custom train returned weights of other names, shapes or dtypes than sent"
        )
    trained = dict(zip(sent, found.values(), strict=True))
    for key, value in trained.items():
        if not torch.isfinite(value).all():
            raise SandboxRefused(f"{name}: custom train returned NaN or infinite weights ({key})")
    return trained


def _float_state(state: dict[str, Any], name: str, what: str) -> dict[str, Any]:
    """`state` as CPU tensors if every entry is a finite float array; else a refusal."""
    import torch

    tensors = {k: torch.as_tensor(v).detach().cpu() for k, v in state.items()}
    for key, value in tensors.items():
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise SandboxRefused(f"{name}: {what} {key!r} is not finite floats: refused")
    return tensors


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


def _only(keep: set[int]) -> None:
    """Close every file descriptor but `keep` (and stdin, stdout, stderr)."""
    low = 0
    for fd in sorted(keep | {0, 1, 2}):
        if fd > low:  # closerange(n, n) would close from n upwards
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _child(work: Path) -> int:
    """Read the inputs, open the outputs, confine, and run the task's code in a worker
    forked as PID 1 of a new PID namespace, killed with all it started at the limit."""
    import torch

    from flip.fl.tasks import confinement, training  # noqa: F401  (loaded before confinement)
    from flip.fl.tasks.base import TaskSpec

    run = json.loads((work / "run.json").read_text(encoding="utf-8"))
    spec = TaskSpec.model_validate_json((work / "task.json").read_text(encoding="utf-8"))
    given = torch.load(work / "in.pt", weights_only=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out_fd, err_fd = (os.open(work / n, flags, 0o600) for n in ("out.pt", "error.json"))
    _only({out_fd, err_fd})
    try:
        confined = confinement.enter(tuple(run["hidden"]))
    except OSError as exc:
        if not run["unconfined"]:
            return _failed(err_fd, f"{_UNCONFINED} ({exc})")
        confined = None
    worker = os.fork()
    if worker == 0:
        code = 1
        try:
            code = _worker(spec, given, run, confined, out_fd, err_fd)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return _wait(worker, float(run["seconds"]), err_fd)


def _wait(worker: int, seconds: float, err_fd: int) -> int:
    """The worker's exit code; at `seconds` it (and so its PID namespace) is killed."""
    pidfd = os.pidfd_open(worker)
    finished, _, _ = select.select([pidfd], [], [], seconds)
    if not finished:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
        return _failed(err_fd, f"ran past its {seconds:g} s limit (wall clock): stopped")
    code = os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1])
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return _failed(err_fd, f"used more than its {seconds:g} s of CPU time: stopped")
    return 0 if code == 0 else max(code, 1)


def _worker(spec: Any, given: dict, run: dict, confined: Any, out_fd: int, err_fd: int) -> int:
    import numpy as np
    import torch

    from flip.data.features.tabular import TabularData
    from flip.fl.tasks import binary, confinement, training
    from flip.fl.tasks.binary import load_arrays
    from flip.fl.tasks.models import load_custom, new_model

    action, memory_mb = run["action"], int(run["memory_mb"])
    os.chdir("/")
    try:
        if confined is not None:
            confinement.drop(confined)
    except OSError as exc:
        return _failed(err_fd, f"{_UNCONFINED} ({exc})")
    device = torch.device(run["device"])
    _limit(device.type, float(run["seconds"]), memory_mb)
    sys.addaudithook(_guard)
    started = time.monotonic()
    try:
        module = load_custom(spec)
        model = new_model(spec)
        if action == "init":
            out: dict[str, Any] = {"metrics": {}}
        elif action == "predict":
            load_arrays(model, given["state"])
            scores = binary.predict(model, given["x"].numpy())
            out = {"metrics": {}, "predictions": torch.as_tensor(scores)}
        else:
            load_arrays(model, given["state"])
            x, y, config = given["x"].numpy(), given["y"].numpy(), given["config"]
            own = getattr(module, action, None)
            data = TabularData(np.arange(len(y)), x, y, [])
            if own is not None:
                metrics = dict(own(model, x, y, config, device))
            elif action == "train":
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
                metrics = training.evaluate(model, data, str(config["outcome"]), device)
            out = {"metrics": metrics}
        if action in ("train", "init"):
            out["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with os.fdopen(out_fd, "wb") as handle:
            torch.save(out, handle)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "alloc" not in str(exc):
            return _failed(err_fd, f"{type(exc).__name__}: {exc}")
        return _failed(err_fd, f"ran out of its {memory_mb} MB memory limit: stopped")
    except PermissionError as exc:
        return _failed(err_fd, str(exc))
    except Exception as exc:  # the task's own error, named for the site's log
        took = time.monotonic() - started
        return _failed(err_fd, f"{type(exc).__name__}: {exc} (after {took:.1f} s)")
    return 0


def _failed(err_fd: int, reason: str) -> int:
    os.ftruncate(err_fd, 0)
    os.pwrite(err_fd, json.dumps({"reason": reason[:MAX_REASON]}).encode(), 0)
    return 1


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
