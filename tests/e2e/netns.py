"""Network namespaces standing for separate machines: a hub's and one per site, on one bridge.

The hub's namespace holds a bridge (`br0`, 10.77.0.1/24); each site's namespace is
joined to it by a veth pair, the site's end holding 10.77.0.N. Only the namespaces
made here are touched: links are made inside them, and deleting a namespace removes
its links. A site's link is cut and restored from the hub's side. The test process
talks into a namespace from a thread that has entered it (`setns`), so its sockets
live there while the process itself stays where it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
HUB_ADDRESS = "10.77.0.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"flip-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


class Network:
    """The hub's namespace with its bridge, and one namespace per site joined to it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.hub = f"flip-{self.tag}-hub"
        self.sites: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self._made: list[str] = []
        self._pools: list[ThreadPoolExecutor] = []

    def _add(self, name: str) -> str:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def start(self) -> Network:
        """Make the hub's namespace and its bridge."""
        self._add(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        return self

    def add_site(self, site: str) -> str:
        """A namespace for `site`, on the hub's bridge; its address."""
        index = len(self.sites) + 2
        namespace = self._add(f"flip-{self.tag}-s{index}")
        outer, inner = f"h{index}", "eth0"
        _ip("-n", self.hub, "link", "add", outer, "type", "veth", "peer", inner, "netns", namespace)
        _ip("-n", self.hub, "link", "set", outer, "master", "br0", "up")
        address = f"10.77.0.{index}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
        _ip("-n", namespace, "link", "set", inner, "up")
        self.sites[site], self.addresses[site] = namespace, address
        return address

    def _hub_end(self, site: str) -> str:
        return f"h{self.sites[site].rsplit('-s', 1)[1]}"

    def cut(self, site: str) -> None:
        """Take down the site's link at the hub's end (as a pulled cable would)."""
        _ip("-n", self.hub, "link", "set", self._hub_end(site), "down")

    def restore(self, site: str) -> None:
        """Bring the site's link back up."""
        _ip("-n", self.hub, "link", "set", self._hub_end(site), "up")

    @staticmethod
    def command(namespace: str, *args: str) -> list[str]:
        """`args` run inside `namespace`."""
        return ["ip", "netns", "exec", namespace, *args]

    def listening(self, namespace: str) -> list[str]:
        """The local addresses of the TCP sockets listening in `namespace`."""
        out = subprocess.run(
            self.command(namespace, "ss", "-ltnH"), capture_output=True, text=True, check=True
        ).stdout
        return [line.split()[3] for line in out.splitlines() if line.strip()]

    def caller(self, namespace: str) -> Callable[..., Any]:
        """`call(fn, *args)`: fn(*args) run on a thread inside `namespace`."""
        pool = ThreadPoolExecutor(1, initializer=_enter, initargs=(namespace,))
        self._pools.append(pool)

        def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            return pool.submit(fn, *args, **kwargs).result()

        return call

    def stop(self) -> None:
        """Delete every namespace made here (their links go with them)."""
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for name in reversed(self._made):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", name)
        self._made.clear()


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
    finally:
        os.close(fd)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    """A hub namespace with its bridge; every namespace made is deleted on exit."""
    made = Network()
    try:
        yield made.start()
    finally:
        made.stop()
