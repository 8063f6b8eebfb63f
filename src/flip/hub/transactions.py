"""One database transaction per request: one thread writes, readers never wait.

A route that writes (`@writes`) runs its body in the hub's single writer thread,
inside one transaction that commits before the response is sent. Writes queue
there one after another without a hop through the event loop between them, so a
burst of writers costs only their own database time; no request thread ever waits
on a database lock. Each committed write wakes the agents' long polls, which then
look for new work, and retires what `Fresh` caches; a read that only appends to
the audit log (`@writes(wake=False)`) does neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from inspect import Parameter
from typing import Annotated, Any, TypeVar, get_type_hints

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine, event
from sqlalchemy.sql.dml import UpdateBase

#: Execution option that makes a SQLite transaction deferred (a reader) instead of immediate.
READ_ONLY = "flip_read_only"

#: The scope retired when a write touches a table that says who a caller is.
CREDENTIALS = "credentials"
CREDENTIAL_TABLES = frozenset({"users", "api_tokens", "sessions", "sites"})
#: Where a writer connection collects the tables its transaction writes.
_WRITTEN = "flip_written_tables"

#: Seconds a thread may hold the GIL while another waits (`sys.setswitchinterval`) in a
#: served hub. At Python's 5 ms default the writer thread, which gives up the GIL on
#: every database call, waits up to 5 ms to get it back while request threads compute:
#: under `flip bench hub` on SQLite, 0.5 ms cut the answers' p50 from 220 to 53 ms.
SWITCH_INTERVAL = 0.0005


class WriteTurns:
    """Counts committed writes (`generation`) and wakes the long polls waiting for one.

    Its event belongs to the event loop that serves the app; an app served again on
    a new loop (a new test client) gets a new one.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.scoped: dict[Hashable, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._changed = loop, asyncio.Event()

    def changed_elsewhere(self) -> None:
        """Wake the waiters after a write made outside a request (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.generation += 1  # no one waits yet: only the caches need to know
            return
        loop.call_soon_threadsafe(self._wake)

    def changed(self, scope: Hashable | None = None) -> None:
        """Wake the waiters after a write; called in the event loop that serves the app.

        A write that changes only what is kept under `scope` (one site's own work)
        wakes no one and retires only that.
        """
        if scope is not None:
            self.scoped[scope] = self.scoped.get(scope, 0) + 1
            return
        self._bind()
        self._wake()

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


T = TypeVar("T")


class Fresh:
    """Values read from the database, reused until a write commits in this process.

    An entry also lapses after `ttl` seconds, which bounds how long a change made by
    another process on the same database (a second hub, a CLI command) goes unseen.
    Used from the event loop only, so its entries need no lock.
    """

    def __init__(self, turns: WriteTurns, ttl: float = 5.0, size: int = 10_000) -> None:
        self.turns = turns
        self.ttl = ttl
        self.size = size
        self._entries: dict[Hashable, tuple[tuple[int, int], float, Any]] = {}
        self._reading_all: asyncio.Task | None = None

    async def get(
        self,
        key: Hashable,
        read: Callable[[], T],
        scope: Hashable | None = None,
        *,
        read_all: Callable[[], dict[Hashable, T]] | None = None,
        everything: bool = True,
    ) -> T:
        """The value kept for `key` if still fresh, else `read()` in a worker thread (then kept).

        A value kept under a `scope` is also retired by writes scoped to it. A fresh
        value costs no thread hop: most requests are answered from here. With
        `read_all`, a value that a write everyone sees retired (or that expired) is
        read again with all its kind, each value kept under its key as scope, by one
        call for every request that wants one meanwhile. With `everything` False only
        writes scoped to `scope` (and the `ttl`) retire the value.
        """
        turns = self.turns
        generation = (turns.generation if everything else 0, turns.scoped.get(scope, 0))
        entry = self._entries.get(key)
        live = entry is not None and time.monotonic() - entry[1] < self.ttl
        if live and entry[0] == generation:
            return entry[2]
        if read_all is not None and not (live and entry[0][0] == generation[0]):
            if self._reading_all is None:
                self._reading_all = asyncio.ensure_future(self._read_all(read_all))
            await asyncio.shield(self._reading_all)
            entry = self._entries.get(key)
            if entry is not None and entry[0] == generation:
                return entry[2]
        value = await run_in_threadpool(read)
        self._keep(key, generation, value)
        return value

    async def _read_all(self, read_all: Callable[[], dict[Hashable, Any]]) -> None:
        turns = self.turns
        generation, scoped = turns.generation, dict(turns.scoped)
        try:
            values = await run_in_threadpool(read_all)
        finally:
            self._reading_all = None
        for key, value in values.items():
            self._keep(key, (generation, scoped.get(key, 0)), value)

    def _keep(self, key: Hashable, generation: tuple[int, int], value: Any) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (generation, time.monotonic(), value)


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only; on SQLite (WAL) it never waits for a writer.

    On PostgreSQL it reads in autocommit: at READ COMMITTED (the default) each
    statement sees its own snapshot inside a transaction too, so BEGIN and ROLLBACK
    would only add two round trips.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execution_options(**{READ_ONLY: True})
        yield conn


class Writer:
    """The hub's one writer thread. Jobs that queue up while it commits are committed
    together (group commit), each in its own savepoint, so one that fails changes nothing
    and the others still land."""

    def __init__(self, engine: Engine, turns: WriteTurns, group: int = 64) -> None:
        self.engine = engine
        self.turns = turns
        self.group = group
        event.listen(engine, "before_execute", _note_written_table)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(
        self, job: Callable[[Connection], T], wake: bool = True, scope: Hashable | None = None
    ) -> T:
        """`job(conn)` in a write transaction, committed when this returns; its result.

        Once committed it wakes the long polls (unless not `wake`), or, with a `scope`,
        retires only what is kept under it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="flip-writer", daemon=True)
                self._thread.start()
            # What the job retires once committed: False nothing, None everything, or a scope.
            self._jobs.put((job, scope if wake else False, loop, future))
        return await future

    def close(self) -> None:
        """Let the jobs queued so far finish, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(None)
        if thread is not None:
            thread.join()

    def _serve(self) -> None:
        stop = False
        while not stop:
            batch = [self._jobs.get()]
            while len(batch) < self.group and not self._jobs.empty():
                batch.append(self._jobs.get())
            if None in batch:
                stop = True
                batch = [job for job in batch if job is not None]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple]) -> None:
        """Run the jobs queued together in one transaction, each in its own savepoint.

        A job alone needs no savepoint (its failure rolls the transaction back): two
        round trips fewer on PostgreSQL for the write that came when the writer was idle.
        """
        outcomes: list[tuple[object, BaseException | None]] = []
        written: set[str] = set()
        try:
            with self.engine.begin() as conn:
                conn.info[_WRITTEN] = written
                try:
                    if len(batch) == 1:
                        outcomes.append((batch[0][0](conn), None))
                    else:
                        for job, *_ in batch:
                            try:
                                with conn.begin_nested():
                                    outcomes.append((job(conn), None))
                            except Exception as exc:  # only this job's savepoint rolls back
                                outcomes.append((None, exc))
                finally:
                    del conn.info[_WRITTEN]
        except BaseException as exc:  # a lone job or the commit failed: every job in it did
            outcomes = [(None, exc)] * len(batch)
        done = {
            wake for (_, wake, _, _), (_, error) in zip(batch, outcomes, strict=True) if not error
        }
        if done and written & CREDENTIAL_TABLES:
            done.add(CREDENTIALS)
        for scope in done - {False}:
            batch[0][2].call_soon_threadsafe(self.turns.changed, scope)
        for (_, _, loop, future), (result, error) in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, result, error)


def _note_written_table(conn: Connection, clause: object, *args: object) -> None:
    """Remember which tables a writer transaction inserts into, updates or deletes from."""
    written = conn.info.get(_WRITTEN)
    if written is not None and isinstance(clause, UpdateBase):
        written.add(clause.table.name)


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def writes(
    endpoint: Callable[..., T] | None = None,
    *,
    wake: bool = True,
    scope: Callable[[dict[str, Any]], Hashable] | None = None,
) -> Any:
    """Make a route that writes: its body runs in the writer thread, `conn: Conn` its transaction.

    The route keeps every other parameter FastAPI injects; `wake=False` is for a read
    whose only write is its audit entry, and `scope(arguments)` names the one thing
    a write changes (a site's own work), so it retires only that.
    """

    def wrap(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        hints = get_type_hints(function, include_extras=True)
        signature = inspect.signature(function)
        params = [
            p.replace(annotation=hints.get(name, p.annotation))
            for name, p in signature.parameters.items()
            if name != "conn"
        ]
        own_request = "request" in signature.parameters
        if not own_request:
            params.append(Parameter("request", Parameter.KEYWORD_ONLY, annotation=Request))

        @functools.wraps(function)
        async def route(**kwargs: Any) -> T:
            request = kwargs["request"] if own_request else kwargs.pop("request")
            writer: Writer = request.app.state.writer
            key = None if scope is None else scope(kwargs)
            return await writer.run(lambda conn: function(conn=conn, **kwargs), wake, key)

        returns = hints.get("return", signature.return_annotation)
        route.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=params, return_annotation=None if returns is type(None) else returns
        )
        return route

    return wrap if endpoint is None else wrap(endpoint)


def _read_conn(request: Request) -> Iterator[Connection]:
    with reading(request.app.state.engine) as conn:
        yield conn


#: The connection of a `@writes` route's transaction (the writer thread passes it in).
Conn = Connection
#: A connection for a request that only reads.
ReadConn = Annotated[Connection, Depends(_read_conn, scope="function")]
