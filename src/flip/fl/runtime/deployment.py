"""The deployment runtime: real `flower-superlink` and `flower-supernode` processes.

One SuperLink (its Fleet, Control and Runtime APIs on one HTTPS port) and one
SuperNode per site, on loopback, with TLS (a private CA)
and SuperNode authentication (each node's key registered with the SuperLink) on
by default. A run is submitted with `flwr run` as a Flower App whose ServerApp
is `flip.fl.runtime.deployed_server` and whose ClientApp is FLIP's site ClientApp
(`flip.fl.client`), so each site checks its approvals and policy before it
reads a row, exactly as in simulation. Every process gets its own session and
is stopped with everything it started.
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

import torch

from flip.fl.runtime.credentials import TlsFiles, make_node_key, make_tls
from flip.fl.tasks.base import TaskSpec
from flip.hub.server import free_port

CONNECTION = "flip"


class DeploymentError(RuntimeError):
    """A Flower process did not start, or a run did not finish; the message says which."""


@dataclass
class DeployedResult:
    """What a deployed run produced: the final model and the metrics per round and site."""

    state_dict: dict[str, torch.Tensor]
    rounds: list[dict[str, float]]
    per_site: dict[str, dict[str, float]]
    seconds: float


@dataclass
class _Node:
    site_config: Path
    port: int
    key: Path | None
    process: subprocess.Popen | None = None


@dataclass
class Deployment:
    """A SuperLink and one SuperNode per site on loopback; use as a context manager."""

    work: Path
    sites: dict[str, Path]
    tls: bool = True
    node_auth: bool = True
    port: int = field(default_factory=free_port)
    nodes: dict[str, _Node] = field(default_factory=dict)
    superlink: subprocess.Popen | None = None
    tls_files: TlsFiles | None = None

    def __enter__(self) -> Deployment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Flower process: this Python's scripts first on PATH."""
        scripts = str(Path(sys.executable).parent)
        path = f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "FLWR_HOME": str(self.work / "flwr-home")}

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.work / "logs" / f"{name}.log").open("ab")
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def start(self) -> None:
        """Start the SuperLink, register the nodes' keys, start one SuperNode per site."""
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        security = ["--insecure"]
        if self.tls:
            self.tls_files = make_tls(self.work / "tls")
            security = [
                f"--ssl-ca-certfile={self.tls_files.ca}",
                f"--ssl-certfile={self.tls_files.certificate}",
                f"--ssl-keyfile={self.tls_files.key}",
            ]
        command = [
            "flower-superlink",
            *security,
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--database={self.work / 'superlink.db'}",
            "--disable-runtime-dependency-installation",
        ]
        if self.node_auth:
            command.append("--enable-supernode-auth")
        self.superlink = self._spawn("superlink", command)
        _wait_for_port(self.port, self.superlink, self.work / "logs" / "superlink.log")
        self._write_connection()
        for name, site_config in self.sites.items():
            key = None
            if self.node_auth:
                key, public = make_node_key(self.work / "node-keys", name)
                self._flwr("supernode", "register", str(public), CONNECTION, "--name", name)
            self.nodes[name] = _Node(site_config.resolve(), free_port(), key)
            self.start_node(name)

    def _write_connection(self) -> None:
        home = self.work / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        security = (
            f'root-certificates = "{self.tls_files.ca}"' if self.tls_files else "insecure = true"
        )
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}\n',
            encoding="utf-8",
        )

    def _flwr(self, *args: str, timeout: float = 120) -> str:
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

    def start_node(self, name: str) -> None:
        """Start (or restart) the SuperNode of one site."""
        node = self.nodes[name]
        security = (
            [f"--root-certificates={self.tls_files.ca}"] if self.tls_files else ["--insecure"]
        )
        auth = [f"--auth-supernode-private-key={node.key}"] if node.key else []
        node.process = self._spawn(
            f"supernode-{name}",
            [
                "flower-supernode",
                *security,
                *auth,
                f"--superlink=127.0.0.1:{self.port}",
                f"--port={node.port}",
                f'--node-config=site-config="{node.site_config}"',
            ],
        )

    def kill_node(self, name: str) -> None:
        """Kill one site's SuperNode at once (SIGKILL), as a crash would."""
        node = self.nodes[name]
        if node.process is not None:
            _kill(node.process)
            node.process = None

    def run(
        self,
        project: str,
        spec: TaskSpec,
        rounds: int,
        round_timeout: float = 120.0,
        min_sites: int | None = None,
    ) -> DeployedResult:
        """Submit the task with `flwr run` and wait for it; the sites check their approvals.

        Rounds start once `min_sites` (default all) SuperNodes are connected, and a
        site that has not answered within `round_timeout` seconds is left out of it.
        """
        run_dir = self.work / "runs" / f"run-{int(time.time() * 1000)}"
        run_dir.mkdir(parents=True)
        (run_dir / "task.json").write_text(spec.model_dump_json(), encoding="utf-8")
        app = _write_app(
            run_dir / "app",
            {
                "project": project,
                "task-spec": str(run_dir / "task.json"),
                "rounds": rounds,
                "n-sites": len(self.nodes),
                "out": str(run_dir),
                "round-timeout": float(round_timeout),
                "min-sites": min_sites or len(self.nodes),
            },
        )
        start = time.perf_counter()
        # Each round may wait out its timeout, and the final evaluation once more.
        timeout = 300 + 2 * (rounds + 1) * round_timeout
        log = self._flwr("run", str(app), CONNECTION, "--stream", timeout=timeout)
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
        )

    def stop(self) -> None:
        """Stop every SuperNode, then the SuperLink, with everything they started."""
        for name in list(self.nodes):
            self.kill_node(name)
        if self.superlink is not None:
            _kill(self.superlink)
            self.superlink = None


def _write_app(folder: Path, config: dict[str, object]) -> Path:
    """A Flower App (pyproject.toml + shim modules) running FLIP's ServerApp and ClientApp."""
    package = folder / "flip_fab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""FLIP\'s apps, packaged for a deployment run."""\n')
    # `app = ...` at top level: flwr checks the attribute by reading the module's AST.
    (package / "server.py").write_text(
        "from flip.fl.runtime.deployed_server import app as server_app\n\napp = server_app\n"
    )
    (package / "client.py").write_text(
        "from flip.fl.client import app as client_app\n\napp = client_app\n"
    )
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
