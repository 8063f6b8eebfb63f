"""The hub's password-guessing throttle: the limits of `flip.webkit.throttle.LoginThrottle`
(per account, per account at an address it signed in from, per client address), its counts
kept in the hub's database, so a restart forgets no guess and every hub process on one
database counts together.

An attempt is looked at on a read connection first, so a throttled guess writes nothing;
one under the limits is counted in a write that looks again (the writer runs one job at a
time, and SQLite's writes lock at BEGIN, so guesses sent at once cannot slip past; hub
processes on one PostgreSQL database may each let one through at the same instant).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine, delete, insert, select

from flip.hub.db import login_addresses, login_failures, name_key
from flip.hub.transactions import Writer, reading
from flip.webkit.throttle import WRONG_PASSWORDS, too_many, wait_under

#: The longest client address kept (a proxy's X-Forwarded-For may say anything).
ADDRESS_LENGTH = 100


class StoredThrottle:
    """Sliding-window counts of password attempts that did not succeed, in the hub database.

    As `LoginThrottle`: an attempt counts from its start and is taken back if it succeeds; a
    success clears its account's count and makes the address known to the account, whose
    attempts from there then count apart from everyone else's guesses at the account.
    """

    def __init__(
        self,
        engine: Engine,
        writer: Writer,
        account_limit: int,
        address_limit: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window = window
        self.clock = clock

    async def attempt(self, account: str, address: str) -> int:
        """Count an attempt and return its id (for `succeeded`), or raise 429 with
        Retry-After if over a limit. An account is counted whatever the case it is typed in
        (sign-in ignores it)."""
        account, address = name_key(account), address[:ADDRESS_LENGTH]

        def look() -> float:
            with reading(self.engine) as conn:
                return self._wait(conn, account, address, self.clock())

        if (wait := await run_in_threadpool(look)) > 0:
            raise too_many(wait, WRONG_PASSWORDS)
        wait, counted = await self.writer.run(
            lambda conn: self._count(conn, account, address), wake=False
        )
        if wait > 0:
            raise too_many(wait, WRONG_PASSWORDS)
        return counted

    async def succeeded(self, account: str, address: str, counted: int) -> None:
        """Forget the account's failures, take back attempt `counted` at the address, and know
        the address as the account's from now on."""
        account, address = name_key(account), address[:ADDRESS_LENGTH]

        def job(conn: Connection) -> None:
            keys = (_key("account", account), _key("known", account, address))
            conn.execute(
                delete(login_failures).where(
                    login_failures.c.key.in_(keys) | (login_failures.c.id == counted)
                )
            )
            known = (login_addresses.c.account == account) & (login_addresses.c.address == address)
            conn.execute(delete(login_addresses).where(known))
            conn.execute(
                insert(login_addresses).values(account=account, address=address, at=self.clock())
            )

        await self.writer.run(job, wake=False)

    def _keys(self, conn: Connection, account: str, address: str) -> list[tuple[str, int]]:
        """What an attempt counts against, with each limit: the account's count (its own at a
        known address, else the one every other address shares) and the address's."""
        known = conn.execute(
            select(login_addresses.c.at).where(
                login_addresses.c.account == account, login_addresses.c.address == address
            )
        ).first()
        mine = _key("known", account, address) if known else _key("account", account)
        return [(mine, self.account_limit), (_key("address", address), self.address_limit)]

    def _wait(self, conn: Connection, account: str, address: str, now: float) -> float:
        """Seconds until an attempt on `account` from `address` is under every limit."""
        waits = [0.0]
        for key, limit in self._keys(conn, account, address):
            stamps = conn.execute(
                select(login_failures.c.at)
                .where(login_failures.c.key == key, login_failures.c.at > now - self.window)
                .order_by(login_failures.c.at)
            ).scalars()
            waits.append(wait_under(list(stamps), limit, self.window, now))
        return max(waits)

    def _count(self, conn: Connection, account: str, address: str) -> tuple[float, int]:
        """(wait, 0) if over a limit now; else (0, the id of the attempt counted at the
        address), counted against its keys. Counts past the window are dropped."""
        now = self.clock()
        conn.execute(delete(login_failures).where(login_failures.c.at <= now - self.window))
        if (wait := self._wait(conn, account, address, now)) > 0:
            return wait, 0
        counted = 0
        for key, _ in self._keys(conn, account, address):
            made = conn.execute(insert(login_failures).values(key=key, at=now))
            counted = made.inserted_primary_key[0]
        return 0.0, counted


def _key(*parts: str) -> str:
    """A count's key as stored: its kind, then the account and/or address."""
    return "\x1f".join(parts)
