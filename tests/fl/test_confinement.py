"""The kernel confines a custom task's worker even where Python's audit hook sees nothing.

Each check forks, confines the child as the sandbox does (`enter`, then a worker forked
into the new PID namespace that calls `drop`) and has it try an escape the reviewer found
with ctypes: the answers come back through a pipe. No torch, no sandbox process: fast.
"""

import ctypes
import json
import os
import socket
import time
from pathlib import Path

import pytest

from flip.fl.tasks import confinement

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/ns/pid").exists(), reason="needs Linux namespaces"
)


def _confined(probe, *, hidden=(), as_root=None, drop=True) -> dict:
    """What `probe()` returned in a worker confined as the sandbox's."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        answer = {}
        try:
            confined = confinement.enter(tuple(hidden), as_root=as_root)
            worker = os.fork()
            if worker == 0:
                try:
                    if drop:
                        confinement.drop(confined)
                    os.write(write, json.dumps(probe()).encode())
                finally:
                    os._exit(0)
            os.waitpid(worker, 0)
        except BaseException as exc:
            answer = {"error": repr(exc)}
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    return json.loads(data)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _connect(port: int) -> int:
    """connect() to 127.0.0.1:port through libc, as ctypes lets a task do."""
    libc = _libc()
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        return -ctypes.get_errno()
    address = socket.inet_aton("127.0.0.1")
    sockaddr = socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + address + bytes(8)
    return libc.connect(fd, sockaddr, len(sockaddr))


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def secret(tmp_path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir(mode=0o755)
    path = folder / "ledger.db"
    path.write_text("approvals and audit")
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path drops to nobody")
def test_as_root_the_worker_is_nobody_without_network_processes_or_the_hosts_netns(
    listener, secret, tmp_path
):
    mark = tmp_path / "marks"
    mark.mkdir(mode=0o777)
    mark.chmod(0o777)
    parent = os.getpid()

    def probe():
        libc = _libc()
        try:
            secret.read_text()
            readable = True
        except PermissionError:
            readable = False
        try:
            handle = os.open(f"/proc/{parent}/ns/net", os.O_RDONLY)
            joined = libc.setns(handle, 0x40000000)
        except OSError:
            joined = -1
        system = libc.system(f"echo ran > {mark}/system".encode())
        return {
            "uid": os.getuid(),
            "pid": os.getpid(),
            "readable": readable,
            "setns": joined,
            "connect": _connect(listener),
            "system": system,
        }

    got = _confined(probe)
    assert got["uid"] == confinement.NOBODY and got["pid"] == 1, got
    assert not got["readable"], "a 0600 site file is closed to the worker"
    assert got["setns"] != 0 and got["connect"] != 0, "no way back to the host's network"
    assert got["system"] != 0 and not (mark / "system").exists(), "no process runs"
    assert _connect(listener) == 0, "the host's own network still works"


def test_without_root_a_user_namespace_hides_the_sites_folders(listener, secret):
    def probe():
        return {
            "listing": os.listdir(secret.parent),
            "connect": _connect(listener),
            "fork": _libc().fork(),
        }

    got = _confined(probe, hidden=[str(secret.parent)], as_root=False)
    assert got == {"listing": [], "connect": got["connect"], "fork": -1}, got
    assert got["connect"] != 0
    assert secret.exists() and os.listdir(secret.parent) == ["ledger.db"]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _leads_a_session(pids: list[int]) -> bool:
    """Whether the one process in `pids` has called setsid."""
    if len(pids) != 1:
        return False
    fields = Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[3]) == pids[0]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def test_killing_the_worker_kills_every_process_it_started_even_a_new_session():
    """The worker is PID 1 of its own PID namespace: a setsid grandchild dies with it."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            confinement.enter(())
            worker = os.fork()
            if worker == 0:  # no drop: the PID namespace alone must hold
                os.close(write)
                if os.fork() == 0:
                    os.setsid()
                    time.sleep(60)
                    os._exit(0)
                time.sleep(60)
                os._exit(0)
            deadline = time.monotonic() + 10
            while not _leads_a_session(_children(worker)) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(write, json.dumps(_children(worker)).encode())
            os.kill(worker, 9)
            os.waitpid(worker, 0)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        grandchildren = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert len(grandchildren) == 1
    deadline = time.monotonic() + 10
    while _alive(grandchildren[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(grandchildren[0]), "the worker's setsid grandchild outlived it"
