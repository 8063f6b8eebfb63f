"""Peak resident memory of this process and everything it started (Ray workers included).

Linux only: read from /proc by a watcher in a process of its own, so that sampling
never takes the measured process's GIL (a sampling thread there slowed Flower's
simulation driver, which is GIL-bound at 1,000 sites).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE")


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


def tree_rss(root: int, skip: int | None = None) -> int:
    """Resident bytes of `root` and all its descendants now, leaving out process `skip`."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        todo += tree.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def watch(root: int, interval: float) -> int:
    """Sample `root`'s tree every `interval` seconds until a line arrives on stdin: the peak."""
    peak = 0
    while True:
        peak = max(peak, tree_rss(root, skip=os.getpid()))
        if select.select([sys.stdin], [], [], interval)[0]:
            return peak


class PeakTreeRss:
    """`with PeakTreeRss() as peak: ...`, then `peak.bytes`: the largest tree RSS sampled."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.bytes = 0
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
        self.bytes = int(out)


if __name__ == "__main__":
    print(watch(int(sys.argv[1]), float(sys.argv[2])))
