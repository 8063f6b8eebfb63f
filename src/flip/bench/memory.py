"""Peak resident memory of this process and everything it started (Ray workers included),
and the CPU time they used meanwhile.

Linux only: read from /proc by a watcher in a process of its own, so that sampling
never takes the measured process's GIL (a sampling thread there slowed Flower's
simulation driver, which is GIL-bound at 1,000 sites).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _tree(root: int, skip: int | None) -> Iterator[int]:
    """`root` and all its descendants now, leaving out process `skip` and its descendants."""
    tree, todo = _children(), [root]
    while todo:
        pid = todo.pop()
        if pid != skip:
            todo += tree.get(pid, [])
            yield pid


def tree_rss(root: int, skip: int | None = None) -> int:
    """Resident bytes of `root` and all its descendants now, leaving out process `skip`."""
    total = 0
    for pid in _tree(root, skip):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def tree_cpu(root: int, skip: int | None = None) -> dict[int, float]:
    """CPU seconds (user + system) each process of `root`'s tree has used, by pid, leaving out
    process `skip` and its descendants."""
    seconds = {}
    for pid in _tree(root, skip):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def watch(root: int, interval: float) -> tuple[int, float]:
    """Sample `root`'s tree every `interval` seconds until a line arrives on stdin: the peak
    RSS, and the CPU seconds its processes used since the first sample (as last sampled: a
    process that ends between two samples loses what it used since the one before)."""
    peak, first, last = 0, tree_cpu(root, skip=os.getpid()), {}
    while True:
        peak = max(peak, tree_rss(root, skip=os.getpid()))
        last.update(tree_cpu(root, skip=os.getpid()))
        if select.select([sys.stdin], [], [], interval)[0]:
            return peak, sum(s - first.get(pid, 0.0) for pid, s in last.items())


class PeakTreeRss:
    """`with PeakTreeRss() as peak: ...`, then `peak.bytes`: the largest tree RSS sampled, and
    `peak.cpu_seconds`: the CPU time the tree used meanwhile."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.bytes = 0
        self.cpu_seconds = 0.0
        self._watcher: subprocess.Popen[str] | None = None

    def __enter__(self) -> PeakTreeRss:
        command = [sys.executable, "-m", __name__, str(os.getpid()), str(self.interval)]
        self._watcher = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._watcher is not None
        out, _ = self._watcher.communicate("stop\n")
        peak, cpu = out.split()
        self.bytes, self.cpu_seconds = int(peak), float(cpu)


if __name__ == "__main__":
    print(*watch(int(sys.argv[1]), float(sys.argv[2])))
