"""One database transaction per request: writers take turns in the event loop, readers never wait.

A request that writes first waits for its turn on an asyncio lock, so no worker
thread ever sits blocked on a database lock while the writer that holds it needs
a thread to commit. Its transaction commits before the response is sent. Each
finished write wakes the agents' long polls, which then look for new work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

#: Execution option that makes a SQLite transaction deferred (a reader) instead of immediate.
READ_ONLY = "flip_read_only"


class WriteTurns:
    """Serialises the hub's writers and tells long-polling readers when something changed.

    Its lock and event belong to the event loop that serves the app; an app served
    again on a new loop (a new test client) gets new ones.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._lock, self._changed = loop, asyncio.Lock(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the writers' turn; when the block ends without error, wake the waiters."""
        self._bind()
        async with self._lock:
            yield
        self._wake()

    def changed_elsewhere(self) -> None:
        """Wake the waiters after a write made outside a request (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.generation += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait(self, generation: int, timeout: float) -> None:
        """Return when a write commits after `generation`, or after `timeout` seconds."""
        self._bind()
        if self.generation != generation:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction; on SQLite (WAL) it never waits for a writer."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


async def _write_turn(request: Request) -> AsyncIterator[None]:
    async with request.app.state.turns.turn():
        yield


def _write_conn(
    request: Request, _turn: Annotated[None, Depends(_write_turn, scope="function")]
) -> Iterator[Connection]:
    with request.app.state.engine.begin() as conn:
        yield conn


def _read_conn(request: Request) -> Iterator[Connection]:
    with reading(request.app.state.engine) as conn:
        yield conn


#: A connection in the request's write transaction, committed before the response is sent.
Conn = Annotated[Connection, Depends(_write_conn, scope="function")]
#: A connection for a request that only reads.
ReadConn = Annotated[Connection, Depends(_read_conn, scope="function")]
