"""`flip synth dermatology` refuses bad options in one line."""

from __future__ import annotations

import subprocess
import sys


def _flip(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flip", "synth", "dermatology", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_an_unknown_size_and_an_unwritable_out_fail_in_one_line(tmp_path):
    sized = _flip("--out", str(tmp_path / "w"), "--size", "huge")
    assert sized.returncode != 0 and "huge" in sized.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    blocked = _flip("--out", str(blocker / "w"), "--sites", "1")
    assert blocked.returncode == 1
    for result in (sized, blocked):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
