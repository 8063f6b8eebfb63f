"""What a `flip` command imports before it does its work: only what it needs."""

import subprocess
import sys
from pathlib import Path


def _run(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


#: Modules of the hub's server side, which a researcher's or site's command never serves:
#: importing them made every `flip fl run` load FastAPI, every route and SciPy's statistics
#: (about 1 s on an idle machine, 20 s on a loaded one) before it read a file.
SERVER_SIDE = ("flip.hub.app", "fastapi", "scipy", "flip.hub.routes")


def test_the_cli_loads_no_hub_server_code_until_a_command_needs_it():
    code = f"import sys, flip.cli.app; print([m for m in {SERVER_SIDE!r} if m in sys.modules])"
    assert _run(code).strip() == "[]"


#: What a command loads only once it runs: each costs from a tenth of a second to seconds of
#: CPU, which every `flip` command (and `flip --help`) would pay if a CLI module imported it.
HEAVY = ("torch", "flwr", "ray", "pandas", "duckdb", "sqlalchemy", "fhir.resources", "numpy")


def test_the_cli_loads_no_heavy_library_until_a_command_needs_it():
    code = f"import sys, flip.cli.app; print([m for m in {HEAVY!r} if m in sys.modules])"
    assert _run(code).strip() == "[]"


def test_an_ingest_that_forgoes_pandas_loads_every_record_without_it(tmp_path: Path):
    lines = [
        '{"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}',
        '{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},'
        ' "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},'
        ' "onsetDateTime": "2020-01-02T10:00:00Z"}',
    ]
    (tmp_path / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    code = (
        "import sys; from pathlib import Path\n"
        "from flip.data.cdm.store import forgo_pandas, open_store\n"
        "forgo_pandas()\n"
        "from flip.data.ingest import ingest_path\n"
        "s = open_store(Path(sys.argv[1]) / 's.duckdb'); s.create()\n"
        "r = ingest_path(s, 'fhir', Path(sys.argv[1]) / 'Patient.ndjson'); s.close()\n"
        "print(r.loaded, r.quarantined, 'pandas' in sys.modules)\n"
    )
    assert _run(code, str(tmp_path)).split() == ["2", "0", "False"]


def test_a_fhir_ingest_command_leaves_the_fhir_models_pandas_and_numpy_to_its_reader(tmp_path):
    lines = [
        '{"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}',
        '{"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code":'
        ' "AMB"}, "subject": {"reference": "Patient/p"}, "period": {"start": "2020-01-02"}}',
    ]
    (tmp_path / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    code = (
        "import atexit, runpy, sys\n"
        "seen = lambda: print(sorted({'fhir.resources', 'pandas', 'numpy'} & set(sys.modules)))\n"
        "atexit.register(seen)\n"
        "sys.argv = ['flip', 'site', 'ingest', 'fhir', sys.argv[1], '--store', sys.argv[2],"
        " '--json']\n"
        "runpy.run_module('flip', run_name='__main__')\n"
    )
    out = _run(code, str(tmp_path / "Patient.ndjson"), str(tmp_path / "s.duckdb"))
    assert '"loaded": 2' in out
    assert out.strip().splitlines()[-1] == "[]"


def test_a_command_of_one_group_builds_only_that_group_with_the_same_usage():
    from typer.testing import CliRunner

    from flip.cli.app import app, for_arguments

    narrow = for_arguments(["site", "ingest", "fhir"])
    assert [group.name for group in narrow.registered_groups] == ["site"]
    assert not narrow.registered_commands
    runner = CliRunner()
    for args in (["site", "ingest", "--help"], ["site", "--help"], ["site", "nosuch"]):
        assert runner.invoke(narrow, args).output == runner.invoke(app, args).output
    assert for_arguments(["--help"]) is app
    assert for_arguments(["version"]) is app
    assert len(app.registered_groups) > 1  # the app itself is left whole


def test_a_demo_refuses_bad_options_before_it_loads_torch_or_flower(tmp_path):
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print(sorted({'torch', 'flwr'} & set(sys.modules))))\n"
        "sys.argv = ['flip', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('flip', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 1, exit.code\n"
    )
    out = str(tmp_path / "out")
    assert _run(code, "demo", "--rounds", "-1", "--out", out).strip() == "[]"
    assert _run(code, "demo", "dermatology", "--sites", "0", "--out", out).strip() == "[]"


def test_a_fhir_ingest_command_without_a_site_yaml_never_loads_the_settings_code(tmp_path):
    (tmp_path / "Patient.ndjson").write_text(
        '{"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}\n'
    )
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('settings loaded:', 'flip.config' in sys.modules))\n"
        "import flip.data.sources.fhir_ahead as ahead\n"
        "start = ahead.read_path_ahead\n"
        "def noted(*args):\n"
        "    print('settings loaded first:', 'flip.config' in sys.modules)\n"
        "    return start(*args)\n"
        "ahead.read_path_ahead = noted\n"
        "sys.argv = ['flip', 'site', 'ingest', 'fhir', sys.argv[1], '--store', sys.argv[2],"
        " '--json']\n"
        "runpy.run_module('flip', run_name='__main__')\n"
    )
    # run where no site.yaml is: there is nothing to read before the reader starts
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "Patient.ndjson"), str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "settings loaded first: False" in result.stdout
    assert "settings loaded: False" in result.stdout
    assert '"loaded": 1' in result.stdout


def test_a_file_experiment_and_its_sites_load_no_database_code():
    # `flip fl run` and each Ray actor of its sites import these; SQLAlchemy (through the
    # pretrained-model registry's ledger) cost each process about 0.2 s of CPU.
    code = (
        "import sys, flip.fl.experiment, flip.fl.experiment_client, flip.fl.server\n"
        "print([m for m in ('sqlalchemy', 'duckdb', 'pandas') if m in sys.modules])"
    )
    assert _run(code).strip() == "[]"
