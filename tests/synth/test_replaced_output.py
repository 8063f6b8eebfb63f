"""Every `flip synth` command replaces its --out folder whole: a re-run leaves no file of
the earlier output behind, and a folder it did not write is refused untouched."""

import pytest
from typer.testing import CliRunner

from flip.cli.app import app

COMMANDS = {
    "tables": ["synth", "tables", "--sites", "2"],
    "radiology": ["synth", "radiology", "--sites", "1", "--people", "2", "--slices", "8"],
    "dermatology": ["synth", "dermatology", "--sites", "1", "--size", "small"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_rerun_replaces_the_output_whole_and_a_foreign_folder_is_refused(command, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    first = runner.invoke(app, [*COMMANDS[command], "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert str(out) in first.output and ".out." not in first.output
    written = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "left-over.csv").write_text("from an earlier run\n")
    again = runner.invoke(app, [*COMMANDS[command], "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == written
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary folder is left"

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    refused = runner.invoke(app, [*COMMANDS[command], "--out", str(foreign)])
    assert refused.exit_code == 1
    assert f"holds files that are not an earlier `flip synth {command}` output" in refused.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
