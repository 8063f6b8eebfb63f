"""Throttles both web apps share: password guessing counted per account and per client
address (the site console's sign-in counts in memory here; the hub keeps the same counts in
its database, `flip.hub.login_throttle`, with `wait_under` and `too_many` from here), and a
per-address limit on what anyone may send unsigned (the hub's account requests)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

from fastapi import HTTPException, Request, status


def client_address(request: Request) -> str:
    """The address the request came from ("unknown" when the server does not say)."""
    return request.client.host if request.client else "unknown"


#: What a throttled password attempt is told (before how long to wait).
WRONG_PASSWORDS = "too many wrong passwords for this account or from this address"


def wait_under(stamps: list[float], limit: int, window: float, now: float) -> float:
    """Seconds until fewer than `limit` of `stamps` (sorted) fall within `window` (0: now)."""
    recent = [s for s in stamps if s > now - window]
    if len(recent) < limit:
        return 0.0
    return recent[len(recent) - limit] + window - now


class SlidingCounts:
    """When each key was counted within the last `window` seconds; the least recently
    counted keys are forgotten past `size` keys."""

    def __init__(self, window: float, clock: Callable[[], float], size: int) -> None:
        self.window = window
        self.clock = clock
        self.size = size
        self._stamps: dict[Hashable, deque[float]] = {}

    def wait(self, key: Hashable, limit: int, now: float) -> float:
        """Seconds until `key` is under `limit` again (0: now)."""
        stamps = self._stamps.get(key)
        if not stamps:
            return 0.0
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if len(stamps) < limit:
            return 0.0
        return stamps[len(stamps) - limit] + self.window - now

    def add(self, key: Hashable, now: float) -> None:
        """Count `key` at `now`."""
        self._stamps.setdefault(key, deque()).append(now)
        self._stamps[key] = self._stamps.pop(key)  # the newest keys go last
        while len(self._stamps) > self.size:
            del self._stamps[next(iter(self._stamps))]

    def forget(self, key: Hashable, stamp: float | None = None) -> None:
        """Take back `key`'s count at `stamp`, or all its counts."""
        if stamp is None:
            self._stamps.pop(key, None)
        elif (stamps := self._stamps.get(key)) is not None and stamp in stamps:
            stamps.remove(stamp)


def too_many(wait: float, message: str) -> HTTPException:
    """429 saying `message` and how long to wait, with Retry-After."""
    seconds = max(1, math.ceil(wait))
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"{message}: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


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
        self.clock = clock
        self.size = size
        self._counts = SlidingCounts(window, clock, size)
        self._known: dict[tuple[str, str], None] = {}

    def attempt(self, account: str, address: str) -> float:
        """Count an attempt and return its stamp, or raise 429 with Retry-After if over a limit."""
        now = self.clock()
        keys = (self._account_key(account, address), ("address", address))
        wait = max(self._counts.wait(key, self.limits[key[0]], now) for key in keys)
        if wait > 0:
            raise too_many(wait, WRONG_PASSWORDS)
        for key in keys:
            self._counts.add(key, now)
        return now

    def succeeded(self, account: str, address: str, stamp: float) -> None:
        """Forget the account's failures, take back this attempt at the address and know the
        address as the account's from now on."""
        self._counts.forget(("account", account))
        self._counts.forget(("known", account, address))
        self._counts.forget(("address", address), stamp)
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


class AddressLimit:
    """At most `limit` of something per client address within `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        size: int = 100_000,
    ) -> None:
        self.limit = limit
        self.clock = clock
        self._counts = SlidingCounts(window, clock, size)

    def count(self, address: str, what: str) -> None:
        """Count one from `address`, or raise 429 with Retry-After naming `what` if over."""
        now = self.clock()
        wait = self._counts.wait(address, self.limit, now)
        if wait > 0:
            raise too_many(wait, f"too many {what} from this address")
        self._counts.add(address, now)
