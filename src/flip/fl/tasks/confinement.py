"""Kernel confinement of a custom task's worker: namespaces, an unprivileged user, seccomp.

`enter` runs in the sandbox's (trusted) child after it has read its inputs: it leaves the
host's network and PID namespaces (as root directly; otherwise inside a new user namespace,
with tmpfs mounted over the site's folders in a new mount namespace). The worker it then
forks is PID 1 of the new PID namespace, so killing it kills every process the task started.
`drop` runs in that worker before the task's code: as root it becomes nobody (uid/gid 65534,
no groups), else it gives up the user namespace's capabilities; then no new privileges, and
a seccomp filter that refuses exec, fork, namespaces, mounts and ptrace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from dataclasses import dataclass

NOBODY = 65534
_NEWNS, _NEWUSER, _NEWPID, _NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_BIND, _MS_REC, _MS_PRIVATE, _MS_NOSUID, _MS_NODEV = 0x1000, 0x4000, 0x40000, 0x2, 0x4
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22
_SECCOMP_MODE_FILTER = 2
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
#: Per architecture: its audit number, and the syscalls refused (execve, execveat, fork,
#: vfork, unshare, setns, mount, ptrace); clone3 gets ENOSYS so threads fall back to clone,
#: whose flags the filter can read (threads pass, new processes do not).
_ARCH = {
    "x86_64": (0xC000003E, (59, 322, 57, 58, 272, 308, 165, 101), 435, 56),
    "aarch64": (0xC00000B7, (221, 281, 97, 268, 40, 117), 435, 220),
}


class ConfinementError(OSError):
    """This host cannot confine a custom task's code as the sandbox requires."""


@dataclass(frozen=True)
class Confined:
    """How the worker was confined: as root (drop to nobody) or in a user namespace."""

    as_root: bool


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise ConfinementError(code, f"{what}: {os.strerror(code)}")


def enter(hidden: tuple[str, ...], *, as_root: bool | None = None) -> Confined:
    """Leave the host's network, PID and mount namespaces (the next fork is PID 1 of the
    new PID namespace). As root, the interpreter's folders are laid bare for nobody; without
    root, from inside a new user namespace, with tmpfs over each `hidden` folder."""
    libc = _libc()
    root = os.geteuid() == 0 if as_root is None else as_root
    if root:
        _check(libc.unshare(_NEWNS | _NEWNET | _NEWPID), "unshare(mount, network, pid)")
    else:
        uid, gid = os.geteuid(), os.getegid()
        flags = _NEWUSER | _NEWNS | _NEWNET | _NEWPID
        _check(libc.unshare(flags), "unshare(user, mount, network, pid)")
        maps = (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1"))
        for name, text in maps:
            with open(f"/proc/self/{name}", "w", encoding="ascii") as handle:
                handle.write(text)
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    if root:  # nobody reads no 0600 site file: nothing to hide, the interpreter to show
        _expose_interpreter(libc)
        return Confined(as_root=True)
    places = _interpreter_places()
    for folder in (os.path.realpath(f) for f in hidden if os.path.isdir(f)):
        if any(p == folder or p.startswith(folder + os.sep) for p in places):
            raise ConfinementError(errno.EBUSY, f"{folder} holds Python itself: cannot hide it")
        _tmpfs(libc, folder)
    return Confined(as_root=False)


def _tmpfs(libc: ctypes.CDLL, folder: str) -> None:
    options = _MS_NOSUID | _MS_NODEV
    target = os.fsencode(folder)
    _check(libc.mount(b"tmpfs", target, b"tmpfs", options, b"size=64k,mode=0755"), f"hide {folder}")


def _closed_ancestor(path: str) -> str | None:
    """The highest folder above `path` that others may not enter (mode without o+x)."""
    parts = os.path.normpath(path).split(os.sep)[1:]
    for depth in range(1, len(parts)):
        folder = os.sep + os.path.join(*parts[:depth])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _interpreter_places() -> list[str]:
    """The folders Python imports from (the outermost of nested ones)."""
    places = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path) if p}
    places = {p for p in places if os.path.isdir(p)}
    return sorted(p for p in places if not any(p.startswith(q + os.sep) for q in places))


def _expose_interpreter(libc: ctypes.CDLL) -> None:
    """Python's own folders (under a private home such as /root) stay readable to nobody:
    tmpfs over the closed folder, with each of them bound back in at its place."""
    by_ancestor: dict[str, list[str]] = {}
    for place in _interpreter_places():
        if (ancestor := _closed_ancestor(place)) is not None:
            by_ancestor.setdefault(ancestor, []).append(place)
    for ancestor, inside in by_ancestor.items():
        handles = [(place, os.open(place, os.O_PATH | os.O_DIRECTORY)) for place in inside]
        _tmpfs(libc, ancestor)
        for place, handle in handles:
            folder = ancestor
            for part in os.path.relpath(place, ancestor).split(os.sep):
                folder = os.path.join(folder, part)
                os.makedirs(folder, exist_ok=True)
                os.chmod(folder, 0o755)  # whatever the umask
            source = f"/proc/self/fd/{handle}".encode()
            bound = libc.mount(source, os.fsencode(place), None, _MS_BIND | _MS_REC, None)
            os.close(handle)
            _check(bound, f"bind {place}")


def drop(confined: Confined) -> None:
    """In the worker, before the task's code: no privileges left, die with the sandbox's
    child, and a seccomp filter against exec, fork, namespaces, mounts and ptrace."""
    libc = _libc()
    if confined.as_root:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    else:
        _drop_capabilities(libc)
    _check(libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl(PDEATHSIG)")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _seccomp(libc)


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: empty (two words each)
    _check(libc.capset(header, data), "capset(none)")


def _op(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _filter(arch: int, refused: tuple[int, ...], clone3: int, clone: int) -> bytes:
    """BPF: foreign architectures and refused calls get EPERM, clone3 ENOSYS, clone only
    for threads; everything else passes."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    deny = _RET_ERRNO | errno.EPERM
    body = [_op(ld, 0, 0, 4), _op(jeq, 1, 0, arch), _op(ret, 0, 0, deny), _op(ld, 0, 0, 0)]
    body.append(_op(jge, 0, 1, 0x40000000))  # the x32 ABI
    body.append(_op(ret, 0, 0, deny))
    for number in refused:
        body += [_op(jeq, 0, 1, number), _op(ret, 0, 0, deny)]
    body += [_op(jeq, 0, 1, clone3), _op(ret, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    body += [_op(jeq, 0, 3, clone), _op(ld, 0, 0, 16), _op(jset, 1, 0, _CLONE_THREAD)]
    body += [_op(ret, 0, 0, deny), _op(ret, 0, 0, _RET_ALLOW)]
    return b"".join(body)


def _seccomp(libc: ctypes.CDLL) -> None:
    machine = platform.machine()
    if machine not in _ARCH:
        raise ConfinementError(errno.ENOSYS, f"no seccomp filter for {machine}")
    program = _filter(*_ARCH[machine])
    buffer = ctypes.create_string_buffer(program, len(program))

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Program(len(program) // 8, ctypes.addressof(buffer))
    _check(
        libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        "seccomp filter",
    )
