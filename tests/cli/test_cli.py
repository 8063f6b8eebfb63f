"""The `flip` command: help that teaches, one-line errors with a non-zero exit."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import IN_CI


def flip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands():
    result = flip("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "bench" in result.stdout


def _leaves(group, ctx, path):
    """Every command under a click group, with its path, through the group's own lookup."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from _leaves(command, ctx, [*path, name])
        else:
            yield [*path, name], command


def test_every_argument_and_option_of_every_command_says_what_it_is():
    import click
    import typer

    from flip.cli.app import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    silent = [
        f"flip {' '.join(path)} {param.human_readable_name}"
        for path, command in _leaves(root, ctx, [])
        for param in command.params
        if param.name != "help" and not getattr(param, "help", None)
    ]
    assert silent == []
    shown = flip("project", "invite", "--help").stdout
    assert "The project's id" in shown


def test_every_command_help_has_an_example_of_that_command_shown_whole():
    import click
    import typer
    from typer.testing import CliRunner

    from flip.cli.app import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    runner = CliRunner()
    wrong = []
    for path, command in _leaves(root, ctx, []):
        name = f"flip {' '.join(path)}"
        examples = re.findall(r"Example:\s*(flip\b[^\n]*)", command.help or "")
        if not examples or any(not re.match(rf"{re.escape(name)}(\s|$)", e) for e in examples):
            wrong.append(f"{name}: {examples}")
            continue
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).stdout
        wrong += [f"{name} shows {e!r} altered" for e in examples if e.strip() not in shown]
    assert wrong == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sites", "0"], "--sites must be between 1 and 20"),
        (["--rounds", "-1"], "--rounds must be between 1 and 500"),
    ],
)
def test_bad_demo_options_fail_in_one_line(args, message, tmp_path):
    result = flip("demo", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_hub_serve_refuses_a_vocabulary_folder_without_concepts_in_one_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    done = flip("hub", "serve", "--db", db, "--vocabulary", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {tmp_path}: no CONCEPT.csv (an Athena download's folder)"


def test_unwritable_out_fails_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = flip("demo", "--out", str(blocker / "out"))
    assert result.returncode == 1
    assert "cannot write to --out" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_exits_non_zero_only_when_nothing_could_be_read(tmp_path):
    store = str(tmp_path / "s.duckdb")
    patient = '{"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}'
    some_bad = tmp_path / "some.ndjson"
    some_bad.write_text(patient + "\n{not json\n")
    all_bad = tmp_path / "all.ndjson"
    all_bad.write_text("{not json\n[1]\n")
    partly = flip("site", "ingest", "fhir", str(some_bad), "--store", store, "--json")
    assert partly.returncode == 0
    assert '"quarantined": 1' in partly.stdout
    nothing = flip("site", "ingest", "fhir", str(all_bad), "--store", store, "--json")
    assert nothing.returncode == 1


def test_a_site_trains_alone_and_can_validate_its_model_later(tmp_path):
    import json

    from flip.data.ledger import Ledger
    from tests.conftest import build_site

    config = build_site(tmp_path, "solo", "csv", 400)
    registry = str(tmp_path / "registry")
    done = flip(
        "site",
        "train",
        "--local",
        "--site-config",
        str(config),
        "--save",
        "solo-mace",
        "--registry",
        registry,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n_train"] + result["n_test"] == 400 and result["auroc"] > 0.6
    assert "train.local" in [e["action"] for e in Ledger(config.parent / "ledger.sqlite").entries()]
    check = flip(
        "site",
        "evaluate",
        result["model"],
        "--store",
        str(config.parent / "store.duckdb"),
        "--registry",
        registry,
        "--json",
    )
    assert check.returncode == 0 and json.loads(check.stdout)["n"] == 400
    refused = flip("site", "train", "--site-config", str(config))
    assert refused.returncode == 2


def test_a_multimodal_task_runs_locally_once_the_site_policy_allows_it(tmp_path):
    import json

    from flip.config import SiteConfig
    from tests.conftest import build_site

    config = build_site(tmp_path, "letters", "fhir-ndjson", 400, images=True)
    args = ("site", "train", "--local", "--task", "mace-5y-multimodal", "--site-config")
    refused = flip(*args, str(config))
    assert refused.returncode == 1
    assert "task kind multimodal is not allowed by letters's policy" in refused.stderr
    site = SiteConfig.load(config)
    site.policy.allowed_task_kinds = ["tabular-logreg", "multimodal"]
    site.save(config)
    registry = str(tmp_path / "registry")
    done = flip(*args, str(config), "--save", "fused", "--registry", registry, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auroc"] > 0.6
    check = flip(
        "site",
        "evaluate",
        json.loads(done.stdout)["model"],
        "--store",
        str(config.parent / "store.duckdb"),
        "--registry",
        registry,
        "--json",
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["n"] == 400


def test_site_count_prints_the_released_count_and_histograms(tmp_path):
    import json

    from tests.conftest import build_site

    config = build_site(tmp_path, "counter", "csv", 120)
    cohort = tmp_path / "cohort.json"
    cohort.write_text(json.dumps({"name": "everyone", "histograms": ["sex"]}))
    store = str(config.parent / "store.duckdb")
    shown = flip("site", "count", str(cohort), "--store", store, "--min-cell", "10")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "everyone: 120"
    assert lines[1].startswith("  by sex: ") and "female: " in lines[1]
    hidden = flip("site", "count", str(cohort), "--store", store, "--min-cell", "500")
    assert hidden.stdout.splitlines() == ["everyone: <500 (suppressed)"]


def _bench(*args: str) -> str:
    """The figures `flip bench ARGS` prints, on one line; fails if the command does."""
    result = subprocess.run(
        [sys.executable, "-m", "flip", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


@pytest.mark.slow
def test_bench_hub_prints_latencies_on_sqlite_and_postgresql(tmp_path):
    small = ["--agents", "3", "--seconds", "1", "--projects", "5"]
    out = _bench("hub", *small, "--work", str(tmp_path / "b"))
    assert "sqlite agent poll p99" in out and "0 errors" in out
    for page in ("/projects/{project}", "/runs/{run}", "/admin/sites", "/models"):
        assert f"sqlite page {page} p95" in out, page
        assert f"sqlite 5 projects: page {page} p95" in out, page
    if IN_CI:
        assert "postgresql agent poll p99" in out


@pytest.mark.slow
def test_bench_ingest_prints_each_figure_against_its_reference(tmp_path):
    out = _bench("ingest", "--patients", "20", "--passes", "1", "--work", str(tmp_path / "b"))
    figures = (
        "flip / bare time ratio",
        "flip / bare command time ratio",
        "flip / bare csv time ratio",
        "flip site ingest csv, whole command",
        "csv writer, per CPU",
    )
    for figure in (*figures, "peak RSS"):
        assert figure in out


@pytest.mark.slow
def test_bench_fl_reports_each_pass_and_prints_figures_against_bare_flower(tmp_path):
    small = ["--sites", "2", "--rounds", "2", "--passes", "2", "--no-secagg", "--no-whole"]
    result = subprocess.run(
        [sys.executable, "-m", "flip", "bench", "fl", *small, "--work", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("flip bench fl:")]
    # Each run of each pass is reported as it ends, the order swapped on the second pass.
    sides = [re.search(r"pass (\d)/2, (flip|bare):", line) for line in progress]
    assert [m.groups() for m in sides if m] == [
        ("1", "flip"),
        ("1", "bare"),
        ("2", "bare"),
        ("2", "flip"),
    ]
    out = " ".join(result.stdout.replace("│", " ").split())
    for ratio in ("FLIP / bare round time", "FLIP / bare peak RSS"):
        assert re.search(re.escape(ratio) + r" \d+\.\d+ x", out), ratio
    # The ratios against bare Flower come first, before the seconds and MiB they come from.
    assert out.index("FLIP / bare peak RSS") < out.index("bare Flower round")
