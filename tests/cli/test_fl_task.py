"""`flip fl run-task` refuses a bad task spec in one line, before any site is read."""

from typer.testing import CliRunner

from flip.cli.app import app


def test_a_spec_that_is_not_a_task_is_one_line_naming_the_file(tmp_path):
    spec = tmp_path / "task.json"
    site = tmp_path / "site.yaml"
    site.write_text("name: never-read\n")
    for text in ("{", '{"kind": "tabular"}'):
        spec.write_text(text)
        result = CliRunner().invoke(
            app, ["fl", "run-task", str(spec), "--site", str(site), "--project", "p"]
        )
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {spec}"), result.output
