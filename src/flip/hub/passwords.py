"""Password hashing with argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, status

_hasher = PasswordHasher()
#: Checked against when the user does not exist, so both failures take as long.
_DUMMY = _hasher.hash("no user has this password")


#: How much lower (Unix nice) the argon2 threads run than the hub's request threads.
NICE = 10


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread); a no-op where unsupported."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None:
        return
    try:
        tid = threading.get_native_id()
        setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE)
    except OSError:
        pass


def hash_password(password: str) -> str:
    """The argon2id hash to store (salted; the password itself is never kept)."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; a missing hash never matches (in the same time)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class PasswordWork:
    """Argon2 hashing on its own few threads, off the writer and the shared worker threads.

    At most `workers` hashes run at once (each takes ~50 ms and 64 MiB); at most
    `queue` more wait for one, and a request beyond that gets 429. The threads run at
    a lower CPU priority (nice +`NICE`, where the OS allows), so a flood of logins
    takes the cores the hub's other requests leave idle, not the ones they need.
    """

    def __init__(self, workers: int = 2, queue: int = 32) -> None:
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="flip-argon2", initializer=_lower_priority
        )
        self._room = workers + queue
        self._busy = 0

    async def verify(self, stored: str | None, password: str) -> bool:
        """`verify_password` on the argon2 threads."""
        return await self._run(verify_password, stored, password)

    async def hash(self, password: str) -> str:
        """`hash_password` on the argon2 threads."""
        return await self._run(hash_password, password)

    async def _run(self, function, *args):
        if self._busy >= self._room:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many password checks at once: try again in a second",
                headers={"Retry-After": "1"},
            )
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        finally:
            self._busy -= 1
