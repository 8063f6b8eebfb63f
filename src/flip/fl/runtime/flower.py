"""Flower's deployment processes: a SuperLink, a SuperNode, and a FLIP run submitted to them.

A `SuperLink` serves its Fleet, Control and Runtime APIs on one port, with TLS
(a private CA) and SuperNode authentication (each node's public key registered)
on by default. A `SuperNode` connects a site to it, outbound, and runs FLIP's site
ClientApp (`flip.fl.client`), which checks the site's approvals before it reads a
row. A run is a Flower App (FAB) whose ServerApp is `flip.fl.runtime.deployed_server`.
Every process gets its own session and is stopped with everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flip.fl.runtime.credentials import TlsFiles, make_tls
from flip.ports import free_port

if TYPE_CHECKING:
    import torch

    from flip.data.features.tabular import Scaling
    from flip.fl.tasks.base import TaskSpec

CONNECTION = "flip"


#: The node config key that makes a SuperNode's ClientApp serve only hub runs its site joined.
HUB_RUNS_ONLY = "hub-runs-only"

#: The file in a run's folder that holds its Flower run id once the ServerApp has started.
RUN_ID_FILE = "flower-run-id"


class DeploymentError(RuntimeError):
    """A Flower process did not start, or a run did not finish; the message says which."""


@dataclass
class DeployedResult:
    """What a deployed run produced: the final model and the metrics per round and site."""

    state_dict: dict[str, torch.Tensor]
    rounds: list[dict[str, float]]
    per_site: dict[str, dict[str, float]]
    seconds: float
    scaling: Scaling | None = None
    best_round: int | None = None
    best_state_dict: dict[str, torch.Tensor] = field(default_factory=dict)


#: Seconds between a SuperExec's looks for a message to start an app for (Flower's
#: default is 1 s, paid by every message a SuperNode receives); the environment overrides it.
TASK_POLL_INTERVAL = "0.2"


def flower_env(home: Path) -> dict[str, str]:
    """The environment of a Flower process: this Python's scripts first on PATH, and its
    SuperExec looking for work every 0.2 s."""
    scripts = str(Path(sys.executable).parent)
    path = f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": TASK_POLL_INTERVAL,
        **os.environ,
        "PATH": path,
        "FLWR_HOME": str(home),
    }


#: Seconds a SuperNode has to leave the SuperLink before it is killed.
STOP_GRACE = 10.0


def _spawn(log: Path, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


class SuperLink:
    """One `flower-superlink` process and the `flwr` connection that talks to it."""

    def __init__(
        self,
        work: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: bool = True,
        node_auth: bool = True,
        public_host: str | None = None,
    ) -> None:
        self.work = work
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.node_auth = node_auth
        wildcard = host in ("0.0.0.0", "::")
        self.public_host = public_host or (socket.getfqdn() if wildcard else host)
        self.tls_files: TlsFiles | None = None
        self.process: subprocess.Popen | None = None
        self.env = flower_env(work / "flwr-home")

    @property
    def database(self) -> Path:
        """The SuperLink's state: runs, messages and registered node keys."""
        return self.work / "superlink.db"

    @property
    def address(self) -> str:
        """host:port where SuperNodes reach it."""
        return f"{self.public_host}:{self.port}"

    def start(self) -> SuperLink:
        """Start the SuperLink and wait until it listens."""
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        security = ["--insecure"]
        if self.tls:
            self.tls_files = self._tls()
            security = [
                f"--ssl-ca-certfile={self.tls_files.ca}",
                f"--ssl-certfile={self.tls_files.certificate}",
                f"--ssl-keyfile={self.tls_files.key}",
            ]
        command = [
            "flower-superlink",
            *security,
            f"--host={self.host}",
            f"--port={self.port}",
            f"--database={self.database}",
            "--disable-runtime-dependency-installation",
        ]
        if self.node_auth:
            command.append("--enable-supernode-auth")
        log = self.work / "logs" / "superlink.log"
        self._stop_leftover()
        self.process = _spawn(log, command, self.env)
        self._pid_file.write_text(str(self.process.pid), encoding="ascii")
        _wait_for_port(self.port, self.process, log)
        self._write_connection()
        return self

    def _tls(self) -> TlsFiles:
        """The CA and certificate made on the first start, kept so SuperNodes keep trusting it."""
        folder = self.work / "tls"
        kept = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
        if all(p.exists() for p in (kept.ca, kept.certificate, kept.key)):
            return kept
        return make_tls(folder, tuple(dict.fromkeys((self.public_host, "127.0.0.1", "localhost"))))

    @property
    def _pid_file(self) -> Path:
        return self.work / "superlink.pid"

    def _stop_leftover(self) -> None:
        """Stop the SuperLink a killed owner left running on this folder's database."""
        if not self._pid_file.exists():
            return
        pid = int(self._pid_file.read_text(encoding="ascii"))
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            command = []
        mine = f"--database={self.database}".encode()
        if any(part.endswith(b"flower-superlink") for part in command) and mine in command:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self._pid_file.unlink()

    def stop(self) -> None:
        """Stop the SuperLink and everything it started."""
        if self.process is not None:
            _kill(self.process)
            self.process = None
            self._pid_file.unlink(missing_ok=True)

    def _write_connection(self) -> None:
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        security = (
            f'root-certificates = "{self.tls_files.ca}"' if self.tls_files else "insecure = true"
        )
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}\n',
            encoding="utf-8",
        )

    def flwr(self, *args: str, timeout: float = 120) -> str:
        """Run one `flwr` command against this SuperLink; its stdout."""
        try:
            done = subprocess.run(
                ["flwr", *args], capture_output=True, text=True, env=self.env, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise DeploymentError(f"flwr {' '.join(args[:2])} took over {timeout:g} s") from exc
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise DeploymentError(f"flwr {' '.join(args[:2])} failed: {' | '.join(tail)}")
        return done.stdout

    def register(self, name: str, public_key: Path) -> int:
        """Let the SuperNode holding the private half of `public_key` connect; its node id."""
        printed = self.flwr(
            "supernode", "register", str(public_key), CONNECTION, "--name", name, "--format", "json"
        )
        return int(_json_tail(printed)["node-id"])

    def unregister(self, node_id: int) -> None:
        """Stop node `node_id` from connecting: the SuperLink refuses its key from now on."""
        self.flwr("supernode", "unregister", str(node_id), CONNECTION)

    def stop_run(self, run_dir: Path) -> bool:
        """Stop the run whose folder is `run_dir` (`flwr stop`); False if it has not started."""
        path = run_dir / RUN_ID_FILE
        if not path.exists():
            return False
        self.flwr("stop", path.read_text(encoding="ascii").strip(), CONNECTION)
        return True

    def run(
        self,
        run_dir: Path,
        project: str,
        spec: TaskSpec,
        *,
        rounds: int,
        n_sites: int,
        round_timeout: float = 120.0,
        min_sites: int | None = None,
        hub_run: int | None = None,
        evaluate_every: int | None = None,
    ) -> DeployedResult:
        """Submit a project's task with `flwr run` and wait for its result.

        `hub_run` names the hub run this is: the sites count the rounds they train by it,
        whichever Flower run carries it. With `evaluate_every` the train replies carry the
        rounds' validation metrics (`flip.fl.carried`).

        Rounds start once `min_sites` (default `n_sites`) SuperNodes are connected; a
        site that has not answered within `round_timeout` seconds is left out of the
        round. The ServerApp writes each round's metrics to `run_dir/rounds.jsonl` as it
        goes, then the final model and metrics.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_ID_FILE).unlink(missing_ok=True)  # a resumed run gets a new Flower id
        (run_dir / "task.json").write_text(spec.model_dump_json(), encoding="utf-8")
        client = (
            "flip.fl.secure_aggregation import task_client_app"
            if spec.secure_aggregation
            else "flip.fl.client import app"
        )
        app = write_app(
            run_dir / "app",
            client,
            {
                "project": project,
                "task-spec": str(run_dir / "task.json"),
                "rounds": rounds,
                "n-sites": n_sites,
                "out": str(run_dir),
                "round-timeout": float(round_timeout),
                "min-sites": min_sites or n_sites,
                **({"hub-run": int(hub_run)} if hub_run is not None else {}),
                **({"evaluate-every": int(evaluate_every)} if evaluate_every else {}),
            },
        )
        import torch

        from flip.data.features.tabular import Scaling

        start = time.perf_counter()
        # Each round may wait out its timeout, and the final evaluation once more.
        timeout = 300 + 2 * (rounds + 1) * round_timeout
        log = self.flwr("run", str(app), CONNECTION, "--stream", timeout=timeout)
        (run_dir / "flwr-run.log").write_text(log, encoding="utf-8")
        result = run_dir / "result.json"
        if not result.exists():
            raise DeploymentError(f"the run wrote no result; see {run_dir / 'flwr-run.log'}")
        document = json.loads(result.read_text(encoding="utf-8"))
        return DeployedResult(
            torch.load(run_dir / "model.pt", weights_only=True),
            document["rounds"],
            document["per_site"],
            time.perf_counter() - start,
            Scaling.model_validate(document["scaling"]) if document.get("scaling") else None,
            document.get("best_round"),
            torch.load(best, weights_only=True) if (best := run_dir / "best.pt").exists() else {},
        )


class SuperNode:
    """One site's `flower-supernode` process: outbound to the SuperLink, FLIP's ClientApp.

    With `hub_runs` (the site agent's node) its ClientApp serves only the hub runs the site
    joined (`flip.fl.client.HUB_RUNS_ONLY` in its node config).
    """

    def __init__(
        self,
        work: Path,
        name: str,
        site_config: Path,
        superlink: str,
        *,
        root_certificates: Path | None = None,
        key: Path | None = None,
        hub_runs: bool = False,
    ) -> None:
        self.work = work
        self.hub_runs = hub_runs
        self.name = name
        self.site_config = site_config.resolve()
        self.superlink = superlink
        self.root_certificates = root_certificates
        self.key = key
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> SuperNode:
        """Start (or restart) the SuperNode."""
        self.kill()
        security = (
            [f"--root-certificates={self.root_certificates}"]
            if self.root_certificates
            else ["--insecure"]
        )
        auth = [f"--auth-supernode-private-key={self.key}"] if self.key else []
        command = [
            "flower-supernode",
            *security,
            *auth,
            f"--superlink={self.superlink}",
            f"--port={self.port}",
            f'--node-config=site-config="{self.site_config}"'
            + (f" {HUB_RUNS_ONLY}=true" if self.hub_runs else ""),
        ]
        log = self.work / "logs" / f"supernode-{self.name}.log"
        self.process = _spawn(log, command, flower_env(self.work / "flwr-home"))
        return self

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process is not None:
            _kill(self.process)
            self.process = None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the process as an operator would (SIGTERM, SIGKILL after `grace` s): the
        SuperNode tells the SuperLink it leaves, so the next one with its key comes online
        at once, not once the SuperLink has missed 2 heartbeats (60 s)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self.kill()


def write_app(
    folder: Path,
    client: str,
    config: dict[str, object],
    server: str = "flip.fl.runtime.deployed_server import app",
) -> Path:
    """A Flower App (pyproject.toml + shim modules) running the ServerApp `server` (FLIP's
    by default) and the ClientApp `client`, each named "MODULE import NAME" (the site
    ClientApp: the plain one, or the SecAgg+ one)."""
    shutil.rmtree(folder, ignore_errors=True)
    package = folder / "flip_fab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""FLIP\'s apps, packaged for a deployment run."""\n')
    # `app = ...` at top level: flwr checks the attribute by reading the module's AST.
    (package / "server.py").write_text(f"from {server} as server_app\n\napp = server_app\n")
    (package / "client.py").write_text(f"from {client} as client_app\n\napp = client_app\n")
    values = "\n".join(f"{key} = {json.dumps(value)}" for key, value in config.items())
    (folder / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["hatchling"]\n'
        'build-backend = "hatchling.build"\n\n'
        "[project]\n"
        'name = "flip-fab"\nversion = "1.0.0"\n'
        'description = "A FLIP task run on Flower\'s deployment engine"\n'
        'license = "Apache-2.0"\ndependencies = []\n\n'
        "[tool.hatch.build.targets.wheel]\n"
        'packages = ["."]\n\n'
        "[tool.flwr.app]\n"
        'publisher = "flip"\n\n'
        "[tool.flwr.app.components]\n"
        'serverapp = "flip_fab.server:app"\n'
        'clientapp = "flip_fab.client:app"\n\n'
        f"[tool.flwr.app.config]\n{values}\n",
        encoding="utf-8",
    )
    return folder


def _json_tail(printed: str) -> dict:
    """The JSON object a `flwr … --format json` command printed last."""
    start = printed.rfind("\n{")
    return json.loads(printed[start + 1 if start >= 0 else printed.find("{") :])


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(f"the SuperLink exited: {_tail(log)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise DeploymentError(f"the SuperLink did not listen on {port}: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(lines[-3:])


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def available() -> bool:
    """Whether Flower's deployment commands are installed beside this Python."""
    scripts = Path(sys.executable).parent
    return all(
        (scripts / c).exists() or shutil.which(c)
        for c in ("flower-superlink", "flower-supernode", "flwr")
    )
