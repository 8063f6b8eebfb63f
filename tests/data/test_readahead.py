"""Reading a source in a child process: same records, same errors, no stray processes."""

import gc
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator

import pytest

from flip.data.sources import readahead
from flip.data.sources.readahead import ReaderDied, read_ahead
from flip.data.sources.records import BlockEvent, EventBlock
from flip.data.sources.tabular import MappingError

pytestmark = pytest.mark.skipif(
    not readahead._can_fork(), reason="this machine cannot fork a reader (one CPU or no fork)"
)


def _records(n: int) -> Iterator[object]:
    yield ("pid", os.getpid())
    for i in range(n):
        yield ("row", i)
        if i % 700 == 0:
            event = BlockEvent(f"k{i}", "person/p", "c", None, 1.0, None, None, f"f:{i}", b"raw")
            yield EventBlock("urn:x", "measurement", [event] * 3)


def test_the_child_yields_what_the_reader_yields_in_order():
    got = list(read_ahead(_records, 2500))
    assert got[0][0] == "pid" and got[0][1] != os.getpid()
    assert got[1:] == list(_records(2500))[1:]


def _fails(after: int) -> Iterator[int]:
    yield from range(after)
    raise MappingError("labs.csv: the mapping names this file but it does not exist")


def test_a_reader_error_is_raised_in_the_caller_with_its_type_and_message():
    seen = []
    with pytest.raises(MappingError, match=r"labs\.csv: the mapping names this file"):
        for item in read_ahead(_fails, 1500):
            seen.append(item)
    assert seen == list(range(1500))


class _Unpicklable(Exception):
    def __init__(self, handle, message):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle")


def _fails_oddly() -> Iterator[int]:
    yield 1
    raise _Unpicklable(object(), "the source broke")


def test_an_error_that_cannot_travel_comes_back_as_text():
    with pytest.raises(RuntimeError, match="_Unpicklable: the source broke"):
        list(read_ahead(_fails_oddly))


def _killed() -> Iterator[int]:
    yield 1
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)
    yield 2


def test_a_reader_that_dies_is_an_error_not_a_hang():
    with pytest.raises(ReaderDied, match="exit code -9"):
        list(read_ahead(_killed))


def _endless() -> Iterator[tuple[str, int]]:
    while True:
        yield ("pid", os.getpid())


def test_closing_early_stops_the_child():
    records = read_ahead(_endless)
    _, pid = next(records)
    records.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def test_a_reading_started_now_and_never_read_stops_its_child():
    before = _children()
    records = readahead.read_ahead_now(_endless)
    (child,) = _children() - before
    del records
    gc.collect()
    assert child not in _children()
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    closed = readahead.read_ahead_now(_endless)
    assert next(closed)[0] == "pid"
    closed.close()
    assert _children() == before
