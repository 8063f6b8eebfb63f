"""Ctrl-C reported by a library's logger (SQLAlchemy closing a connection) stays one line."""

import subprocess
import sys

_PROGRAM = """
import logging, os, signal
from flip.cli.interrupt import reported

with reported():
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("{before}")
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        logging.getLogger("sqlalchemy.pool.impl.QueuePool").error(
            "Exception closing connection", exc_info=True
        )
        raise
"""


def test_an_interrupt_logged_by_a_library_prints_no_traceback_and_other_errors_still_print():
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(before="pool is broken")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["pool is broken", "interrupted"]
