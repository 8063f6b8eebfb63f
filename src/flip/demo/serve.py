"""`flip demo --serve`: the demo's hub web app and each demo site's console, one `flip` process
each on a free loopback port, up until Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flip.data.terminology.athena import starter_folder
from flip.demo.access import RESEARCHER, DemoAccess, hub_url, site_configs
from flip.ports import free_port

FLIP = [sys.executable, "-m", "flip"]
START_SECONDS = 180.0


class ServeError(RuntimeError):
    """A demo server could not start; the message says which and why in one line."""


@dataclass
class Served:
    """The processes serving a demo, and where each answers: 'hub' and each site's name."""

    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process: SIGTERM, then SIGKILL after `grace` seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def exited(self) -> str | None:
        """The name of a process that has stopped on its own, if any."""
        return next((n for n, p in self.processes.items() if p.poll() is not None), None)


def _commands(out: Path) -> dict[str, tuple[list[str], int]]:
    """The command line and port of the hub and of each site's console."""
    port = free_port()
    commands = {
        "hub": (
            [
                *FLIP,
                *("hub", "serve", "--db", hub_url(out), "--port", str(port)),
                *("--signing-key", str(out / "hub-signing.key"), "--log-level", "warning"),
                *("--vocabulary", str(starter_folder())),
            ],
            port,
        )
    }
    for site, config in site_configs(out).items():
        port = free_port()
        command = [*FLIP, "site", "console", "--site-config", str(config), "--port", str(port)]
        commands[site] = (command, port)
    return commands


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/signin", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def serve(out: Path, log: Path | None = None) -> Served:
    """Start the hub web app on the demo's hub database and each demo site's console; return
    once every one answers its sign-in page. ServeError if the demo's files are missing or a
    server does not start (those started are stopped)."""
    out = out.resolve()
    if not (out / "hub.sqlite").exists():
        raise ServeError(f"no demo hub database in {out}: run `flip demo --out {out}` first")
    DemoAccess.load(out)
    log = log or out / "serve.log"
    served = Served()
    sink = log.open("ab")
    try:
        for name, (command, port) in _commands(out).items():
            served.processes[name] = subprocess.Popen(
                command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL
            )
            served.urls[name] = f"http://127.0.0.1:{port}"
        _wait_all(served, log)
    except BaseException:
        served.stop()
        raise
    finally:
        sink.close()
    return served


def _wait_all(served: Served, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    waiting = dict(served.urls)
    while waiting:
        stopped = served.exited()
        if stopped is not None:
            raise ServeError(f"the {stopped} server stopped at start: see {log}")
        if time.monotonic() > deadline:
            raise ServeError(f"{', '.join(waiting)} did not answer in {START_SECONDS:.0f} s")
        waiting = {n: u for n, u in waiting.items() if not _answers(u)}
        time.sleep(0.2)


def describe(served: Served, out: Path) -> str:
    """Where each server answers and who signs in there with which demo credential."""
    access = DemoAccess.load(out.resolve())
    lines = [
        f"hub web app: {served.urls['hub']}/ - sign in as {RESEARCHER} with the password "
        f"{access.researcher_password} (the first sign-in sets up an authenticator app)"
    ]
    for site, (name, password) in access.consoles.items():
        if site in served.urls:
            lines.append(
                f"{site} console: {served.urls[site]}/ - sign in as {name} with the password "
                f"{password}"
            )
    lines.append(
        "These are demo credentials: they open only this demo's files on this machine. "
        "Ctrl-C stops all."
    )
    return "\n".join(lines)


def serve_until_interrupted(out: Path, say: Callable[[str], None]) -> None:
    """Serve the demo until Ctrl-C (or until one server stops on its own), then stop them all."""
    try:
        served = serve(out)
    except KeyboardInterrupt:
        say("stopped before the demo's servers were up")
        return
    try:
        say(describe(served, out))
        while (stopped := served.exited()) is None:
            time.sleep(0.5)
        say(f"the {stopped} server stopped: stopping the others")
    except KeyboardInterrupt:
        say("stopping the demo's servers")
    finally:
        served.stop()
