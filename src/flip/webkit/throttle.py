"""Throttle password guessing: wrong passwords counted per account and per client address
(the hub's API and web sign-in and the site console's sign-in share it)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

from fastapi import HTTPException, Request, status


def client_address(request: Request) -> str:
    """The address the request came from ("unknown" when the server does not say)."""
    return request.client.host if request.client else "unknown"


class LoginThrottle:
    """Sliding-window counts of password attempts that did not succeed, per account and address.

    An attempt counts from the moment it starts (so guesses sent at once cannot all
    slip through while the first is checked) and is taken back if it succeeds; a
    success also clears its account's count. Used from the event loop only.

    An address an account last signed in from is known to it: attempts from there count
    against that account at that address, not the account's count everyone shares, so
    guessing from elsewhere cannot lock the account's owner out of their usual address.
    """

    def __init__(
        self,
        account_limit: int,
        address_limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        size: int = 100_000,
    ) -> None:
        self.limits = {"account": account_limit, "known": account_limit, "address": address_limit}
        self.window = window
        self.clock = clock
        self.size = size
        self._attempts: dict[Hashable, deque[float]] = {}
        self._known: dict[tuple[str, str], None] = {}

    def attempt(self, account: str, address: str) -> float:
        """Count an attempt and return its stamp, or raise 429 with Retry-After if over a limit."""
        now = self.clock()
        keys = (self._account_key(account, address), ("address", address))
        wait = max(self._wait(key, now) for key in keys)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many wrong passwords for this account or from this address: "
                f"try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        for key in keys:
            self._attempts.setdefault(key, deque()).append(now)
            self._attempts[key] = self._attempts.pop(key)  # the newest keys go last
        while len(self._attempts) > self.size:
            del self._attempts[next(iter(self._attempts))]
        return now

    def succeeded(self, account: str, address: str, stamp: float) -> None:
        """Forget the account's failures, take back this attempt at the address and know the
        address as the account's from now on."""
        self._attempts.pop(("account", account), None)
        self._attempts.pop(("known", account, address), None)
        at_address = self._attempts.get(("address", address))
        if at_address is not None and stamp in at_address:
            at_address.remove(stamp)
        self._known.pop((account, address), None)
        self._known[(account, address)] = None
        while len(self._known) > self.size:
            del self._known[next(iter(self._known))]

    def _account_key(self, account: str, address: str) -> tuple[str, ...]:
        """Where an attempt on `account` counts: its own count at a known address, else the
        count every other address shares."""
        if (account, address) in self._known:
            return ("known", account, address)
        return ("account", account)

    def _wait(self, key: tuple[str, ...], now: float) -> float:
        """Seconds until `key` may try again (0: now), after dropping what left the window."""
        stamps = self._attempts.get(key)
        if not stamps:
            return 0.0
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if len(stamps) < self.limits[key[0]]:
            return 0.0
        return stamps[len(stamps) - self.limits[key[0]]] + self.window - now
