"""Password hashing with argon2id (argon2-cffi's recommended parameters: RFC 9106's
low-memory profile; the cheapest profile only where a test hub asks for it)."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, status

#: argon2id parameter sets by name: "rfc9106-low-memory" (t=3, 64 MiB, p=4) for every hub;
#: "test-cheapest" (t=1, 8 KiB, p=1) protects nothing and exists so tests that make
#: hundreds of accounts do not spend minutes hashing.
Profile = Literal["rfc9106-low-memory", "test-cheapest"]
PROFILES = {
    "rfc9106-low-memory": profiles.RFC_9106_LOW_MEMORY,
    "test-cheapest": profiles.CHEAPEST,
}


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


class Passwords:
    """Hashes and checks passwords with one argon2id parameter set."""

    def __init__(self, profile: Profile = "rfc9106-low-memory") -> None:
        self._hasher = PasswordHasher.from_parameters(PROFILES[profile])
        #: Checked against when the user does not exist, so both failures take as long.
        self._dummy = self._hasher.hash("no user has this password")

    def hash(self, password: str) -> str:
        """The argon2id hash to store (salted; the password itself is never kept)."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; a missing hash never matches (in the same time)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


class PasswordWork:
    """Argon2 hashing on its own few threads, off the writer and the shared worker threads.

    At most `workers` hashes run at once (each takes ~50 ms and 64 MiB); at most
    `queue` more wait for one, and a request beyond that gets 429. The threads run at
    a lower CPU priority (nice +`NICE`, where the OS allows), so a flood of logins
    takes the cores the hub's other requests leave idle, not the ones they need.
    """

    def __init__(
        self, workers: int = 2, queue: int = 32, profile: Profile = "rfc9106-low-memory"
    ) -> None:
        self._passwords = Passwords(profile)
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="flip-argon2", initializer=_lower_priority
        )
        self._room = workers + queue
        self._busy = 0

    async def verify(self, stored: str | None, password: str) -> bool:
        """`verify_password` on the argon2 threads."""
        return await self._run(self._passwords.verify, stored, password)

    async def hash(self, password: str) -> str:
        """`hash_password` on the argon2 threads."""
        return await self._run(self._passwords.hash, password)

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
