"""Ctrl-C: one line `interrupted` and exit 130, whatever the interrupted code raised then
(DuckDB's `Query interrupted`, a half-imported module), never a traceback."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import NoReturn

_seen = threading.Event()


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) came during this run."""
    return _seen.is_set()


def _importing(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside an import: a module's top level, where an exception raised
    through a C++ extension (torch's pybind11) aborts the process instead of unwinding."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _seen.set()
    if _importing(frame):
        # nothing is written by an import; ending here is as safe as the kill the stores survive
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        os.write(2, b"interrupted\n")
        os._exit(130)
    signal.default_int_handler(signum, frame)


def _not_the_interrupt(record: logging.LogRecord) -> bool:
    """Keep a log record unless it reports the Ctrl-C itself (SQLAlchemy logs, with its
    traceback, an interrupt that lands while it closes a connection)."""
    return not (record.exc_info and record.exc_info[0] is KeyboardInterrupt)


def _stop() -> NoReturn:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a library re-raising it on the way out
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)


@contextmanager
def reported() -> Iterator[None]:
    """Run the CLI inside: after a Ctrl-C, what it raised or a failing exit becomes the one
    line `interrupted` and exit status 130."""
    signal.signal(signal.SIGINT, _on_sigint)
    if logging.lastResort is not None:
        logging.lastResort.addFilter(_not_the_interrupt)
    try:
        yield
    except SystemExit as exc:
        if exc.code in (0, None) or not interrupted():
            raise
        _stop()
    except KeyboardInterrupt:
        _stop()
    except BaseException:
        if not interrupted():
            raise
        _stop()
