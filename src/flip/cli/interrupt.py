"""Ctrl-C: one line `interrupted` and exit 130, whatever the interrupted code raised then
(DuckDB's `Query interrupted`, a half-imported module), never a traceback."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

_seen = threading.Event()


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) came during this run."""
    return _seen.is_set()


def _on_sigint(signum: int, frame: object) -> None:
    _seen.set()
    signal.default_int_handler(signum, frame)


def _stop() -> NoReturn:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a library re-raising it on the way out
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)


@contextmanager
def reported() -> Iterator[None]:
    """Run the CLI inside: after a Ctrl-C, what it raised or a failing exit becomes the one
    line `interrupted` and exit status 130."""
    signal.signal(signal.SIGINT, _on_sigint)
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
