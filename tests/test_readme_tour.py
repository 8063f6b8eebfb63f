"""The README's "A short tour" runs as written: every command of its fenced bash block, in a
fresh folder, except the heavy ones (`flip demo`, `flip bench`, `flip fl run`), which CI's
own tests of those commands cover."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The folder the tour writes to, as the README spells it.
TOUR = "/tmp/flip-tour"
HEAVY = re.compile(r"^flip (demo|bench|fl run)\b")


def tour_commands() -> list[str]:
    """The tour's commands: the first bash block after its heading, continuation lines joined,
    comments and blank lines dropped."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## A short tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's tour has no bash block"
    commands, pending = [], ""
    for line in block.group(1).splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending)
        pending = ""
    assert not pending, f"a command ends with a backslash: {pending!r}"
    return commands


def _shims(folder: Path) -> dict[str, str]:
    """An environment whose `flip` and `python` are this checkout's, as after `source
    .venv/bin/activate`."""
    folder.mkdir()
    for name, run in (("flip", "-m flip"), ("python", "")):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {run} "$@"\n')
        shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[0] == "source .venv/bin/activate", commands[0]
    light = [c for c in commands[1:] if not HEAVY.match(c)]
    # The tour's store, count, DICOM, training, report, notes, models, analyses and task steps.
    assert len(light) >= 15, light
    assert all(c.startswith(("flip ", "echo ", "printf ")) for c in light), light
    env = _shims(tmp_path / "bin")
    tour = tmp_path / "flip-tour"  # not made here: the tour's first command makes it
    outputs = {}
    for command in light:
        run = subprocess.run(
            command.replace(TOUR, str(tour)),
            shell=True,
            executable="/bin/bash",
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        outputs[command] = run.stdout

    # "Run it again: nothing is added (every record is already there, unchanged)"
    again = [c for c in light if c.startswith("flip site ingest csv") and "--json" in c]
    assert len(again) == 1, again
    report = json.loads(outputs[again[0]])
    assert report["loaded"] == 0 and report["quarantined"] == 0, report
    assert report["unchanged"] > 0, report
    assert report["unchanged"] + report["skipped"] == report["read"], report
    # "skipped by a named rule (here: rows the extract sends twice)"
    assert set(report["skipped_rules"]) == {"identity.superseded_in_run"}, report

    count = next(c for c in light if c.startswith("flip site count"))
    assert re.fullmatch(r"Type 2 diabetes: \d+\n", outputs[count]), outputs[count]
    models = next(c for c in light if c.startswith("flip site models list"))
    assert "minilm" in outputs[models]
    for written in ("report.html", "table1.html", "my-risk/task.json"):
        assert (tour / written).is_file(), written
