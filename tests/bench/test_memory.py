import os
import subprocess
import sys
import time

from flip.bench.memory import PeakTreeRss, tree_rss

ALLOCATE = "import time; block = bytearray(200 * 2**20); print('ready', flush=True); time.sleep(60)"


def _child() -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", ALLOCATE], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_tree_rss_counts_descendants_and_leaves_out_the_skipped_one():
    alone = tree_rss(os.getpid())
    child = _child()
    try:
        assert tree_rss(os.getpid()) - alone > 190 * 2**20
        assert tree_rss(os.getpid(), skip=child.pid) - alone < 50 * 2**20
    finally:
        child.kill()
        child.wait()


def test_peak_is_kept_after_the_memory_is_freed():
    with PeakTreeRss(interval=0.05) as peak:
        child = _child()
        time.sleep(0.3)
        child.kill()
        child.wait()
    assert peak.bytes - tree_rss(os.getpid()) > 190 * 2**20


def test_the_cpu_time_of_a_child_counts_and_what_came_before_does_not():
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    busy = time.process_time() + 0.5
    while time.process_time() < busy:  # this process's CPU before the block is not counted
        pass
    with PeakTreeRss(interval=0.05) as tree:
        child = subprocess.Popen([sys.executable, "-c", burn + "\ntime.sleep(0.3)"])
        child.wait()
    assert 0.4 < tree.cpu_seconds < 1.5
