"""The hub and site agents as separate `flip` processes on loopback, for end-to-end tests."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from flip.hub.client import ResearcherClient
from flip.ports import free_port

FLIP = [sys.executable, "-m", "flip"]


def wait_for(check, what: str, timeout: float = 60.0):
    """Call `check` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run `flip ARGS`; it must succeed."""
    result = subprocess.run([*FLIP, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class Hub:
    """`flip hub serve --flower` on a SQLite database in `folder`; start() again after a kill.

    With `flower` False it serves the API alone (no SuperLink to start).
    """

    folder: Path
    port: int = 0
    flower_port: int = 0
    process: subprocess.Popen | None = None
    flower: bool = True
    #: The vocabulary folder the cohort builder searches (`--vocabulary`), if any.
    vocabulary: Path | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.flower_port = self.flower_port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> str:
        return f"sqlite:///{self.folder / 'hub.sqlite'}"

    def start(self) -> str | None:
        """Start serving; the admin token on a new database, else None."""
        command = [
            *FLIP,
            "hub",
            "serve",
            "--db",
            self.db,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--signing-key",
            str(self.folder / "hub-signing.key"),
        ]
        if self.vocabulary is not None:
            command += ["--vocabulary", str(self.vocabulary)]
        if self.flower:
            command += [
                "--flower",
                "--flower-port",
                str(self.flower_port),
                "--flower-dir",
                str(self.folder / "hub-flower"),
                "--round-timeout",
                "120",
            ]
        log = self.folder / "hub.log"
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:  # a file, not a pipe nobody reads once the hub is up
            self.process = subprocess.Popen(command, stderr=out)

        def printed() -> str:
            with log.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the hub exited: {printed()[-2000:]}")
            return "hub API on" in printed() and self._up()

        wait_for(ready, f"the hub's API (its log: {log})", timeout=120)
        found = re.search(r"admin token .*: (\S+)", printed())
        return found.group(1) if found else None

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop it (SIGTERM), or kill it at once (SIGKILL) as a crash would."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=30)
        self.process = None


def start_agent(config: Path, log: Path) -> subprocess.Popen:
    """`flip site agent` for one site, its stderr in `log`."""
    return subprocess.Popen(
        [*FLIP, "site", "agent", "--site-config", str(config), "--interval", "0.2"],
        stderr=log.open("w"),
    )


def stop_agents(agents: list[subprocess.Popen]) -> list[int]:
    """SIGTERM every agent; their exit codes (killed after 30 s: -9)."""
    for process in agents:
        process.terminate()
    codes = []
    for process in agents:
        try:
            codes.append(process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def matching(*parts: str) -> list[int]:
    """The pids of every process whose command line holds all `parts`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command and all(part in command for part in parts):
            found.append(int(proc.name))
    return found


def kill_matching(*parts: str) -> int:
    """SIGKILL every process whose command line holds all `parts`; how many."""
    killed = 0
    for pid in matching(*parts):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


@dataclass
class Federation:
    """A running hub, a researcher and the admin on it, and the sites' agents."""

    hub: Hub
    researcher: ResearcherClient
    agents: list[subprocess.Popen]
    admin: ResearcherClient


@contextlib.contextmanager
def federation(folder: Path, configs: dict[str, Path]) -> Iterator[Federation]:
    """A hub with Flower and one enrolled agent per site; on exit the agents must stop cleanly."""
    hub = Hub(folder)
    agents: list[subprocess.Popen] = []
    try:
        admin = ResearcherClient(hub.url, hub.start())
        researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
        for name, config in configs.items():
            enrol(hub.url, admin.create_site(name), config)
            agents.append(start_agent(config, folder / f"agent-{name}.log"))
        yield Federation(hub, researcher, agents, admin)
    finally:
        stopped = stop_agents(agents)
        hub.stop()
    assert stopped == [0] * len(agents), f"agents stop cleanly on SIGTERM (exit codes {stopped})"


def enrol(hub_url: str, token: str, config: Path) -> None:
    """`flip site enrol` one site with its one-time token."""
    cli("site", "enrol", "--hub", hub_url, "--token", token, "--site-config", str(config))
