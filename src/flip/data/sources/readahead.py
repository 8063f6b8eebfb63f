"""Read a source in a child process while the caller maps and writes what was read.

Parsing and checking a file costs about as much as converting and writing its
records, so an ingest on two cores runs both at once. The child sends records in
chunks through a bounded queue: memory stays flat, and the reader waits when the
writer falls behind. The child dies with its parent: a killed ingest leaves no reader
behind holding its files.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flip.data.sources.records import EventBlock, same_resource

#: Records per chunk sent to the parent (an EventBlock ends a chunk; the records of one
#: resource stay in one: `same_resource`).
CHUNK = 1000
#: Chunks read ahead before the child waits for the parent.
DEPTH = 4

_DONE = "done"
_FAILED = "failed"
#: prctl(2) option: the signal this process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


class ReaderDied(RuntimeError):
    """The reading process ended without saying why (killed, or out of memory)."""


def _die_with(parent: int) -> None:
    """End this process when process `parent` ends: at once on Linux (the kernel sends
    SIGKILL), elsewhere within a second (a thread watches who the parent is)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)


def _child(
    produce: Callable[..., Iterable[Any]], args: tuple, out: multiprocessing.Queue, parent: int
) -> None:
    _die_with(parent)
    gc.disable()
    chunk: list[Any] = []
    try:
        for record in produce(*args):
            if len(chunk) >= CHUNK and not same_resource(chunk[-1], record):
                out.put(chunk)
                chunk = []
            chunk.append(record)
            if type(record) is EventBlock:
                out.put(chunk)
                chunk = []
        if chunk:
            out.put(chunk)
        out.put(_DONE)
    except BaseException as exc:  # every failure goes back to the parent, after what was read
        if chunk:
            out.put(chunk)
        try:
            pickle.dumps(exc)
        except Exception:  # an exception that cannot travel goes as text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        out.put((_FAILED, exc))


def _can_fork() -> bool:
    return (
        (os.cpu_count() or 1) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def read_ahead(produce: Callable[..., Iterable[Any]], *args: Any) -> Iterator[Any]:
    """Yield what `produce(*args)` yields, computed in a forked child process.

    An exception the reader raises is raised here; closing this generator early
    stops the child. Where a child cannot help or cannot be forked (one CPU, no
    fork on this platform, or inside a daemon process) the reading happens here.
    """
    if not _can_fork():
        yield from produce(*args)
        return
    yield from _drain(*_start(produce, args))


def read_ahead_now(produce: Callable[..., Iterable[Any]], *args: Any) -> Iterator[Any]:
    """`read_ahead`, its child started before this returns (read_ahead's starts on the
    first `next`), so that the reading overlaps whatever the caller does first. The child
    stops when the iterator is exhausted or closed, or is collected without being read."""
    if not _can_fork():
        return iter(produce(*args))
    return _Reading(*_start(produce, args))


def in_child(reading: Iterable[Any]) -> bool:
    """Whether `reading` (from `read_ahead_now`) is read by a child process, not this one."""
    return type(reading) is _Reading


class _Reading:
    """What a started child sends (see `_drain`); closing it, or dropping it unread, stops
    the child, which a generator never started would not."""

    def __init__(self, child: multiprocessing.Process, out: multiprocessing.Queue) -> None:
        self._child, self._out = child, out
        self._records = _drain(child, out)
        self._parent = os.getpid()

    def __iter__(self) -> _Reading:
        return self

    def __next__(self) -> Any:
        return next(self._records)

    def close(self) -> None:
        """Stop the child and drop what it has not sent."""
        self._records.close()
        if os.getpid() == self._parent:  # a forked copy of this object owns no child
            _stop(self._child, self._out)

    def __del__(self) -> None:
        self.close()


def _start(
    produce: Callable[..., Iterable[Any]], args: tuple
) -> tuple[multiprocessing.Process, multiprocessing.Queue]:
    context = multiprocessing.get_context("fork")
    out = context.Queue(maxsize=DEPTH)
    child = context.Process(target=_child, args=(produce, args, out, os.getpid()), daemon=True)
    child.start()
    return child, out


def _drain(child: multiprocessing.Process, out: multiprocessing.Queue) -> Iterator[Any]:
    """What the child sends, until it is done; its failure is raised here."""
    try:
        while True:
            try:
                got = out.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise ReaderDied(
                        f"the reading process stopped (exit code {child.exitcode})"
                    ) from None
                continue
            if got == _DONE:
                return
            if type(got) is tuple and got[0] == _FAILED:
                raise got[1]
            yield from got
    finally:
        _stop(child, out)


def _stop(child: multiprocessing.Process, out: multiprocessing.Queue) -> None:
    """End the child if it still runs, and release the queue (again: no harm)."""
    if child.is_alive():
        child.terminate()
    child.join()
    out.close()
