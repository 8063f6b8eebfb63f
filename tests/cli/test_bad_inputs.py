"""A careless user's unreadable inputs: one line naming the file and the reason, exit 1."""

import json
import signal
import socket
import subprocess
import sys

import pytest
import typer

PNG = b"\x89PNG\r\n\x1a\n\x00\x00"


def flip(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["site", "audit"],
        ["site", "enrol", "--hub", "http://127.0.0.1:1", "--token", "t"],
        ["site", "agent"],
        ["site", "public-key"],
        ["site", "models", "list"],
    ],
)
def test_malformed_site_yaml_names_the_file_and_line(command, tmp_path):
    (tmp_path / "broken.yaml").write_text("not: [valid\n")
    line = one_line(flip(*command, "--site-config", "broken.yaml", cwd=tmp_path))
    assert line.startswith("error: broken.yaml:2: not valid YAML: ")


def test_every_validation_problem_is_named_with_the_file(tmp_path):
    cohort = tmp_path / "badtab.json"
    cohort.write_text('{"name": "x", "include": [{"table": "nosuch", "concept_ids": [1]}]}')
    line = one_line(flip("site", "export-circe", str(cohort)))
    assert line.startswith(f"error: {cohort}: include.0.table: Input should be")
    (tmp_path / "x.csv").write_text("a,b\n")
    line = one_line(flip("site", "audit", "--site-config", "x.csv", cwd=tmp_path))
    assert line.startswith("error: x.csv: Input should be a valid dictionary")


@pytest.mark.parametrize(
    "command",
    [
        ["site", "count", "img.png", "--store", "s.duckdb"],
        ["verify", "img.png"],
        ["task", "propose", "img.png", "--project", "1"],
        ["site", "export-circe", "img.png"],
        ["analyse", "attrition", "img.png", "--store", "a=s.duckdb"],
        ["site", "enrol", "--hub", "http://h", "--token", "t", "--site-config", "img.png"],
    ],
)
def test_binary_inputs_are_named_not_utf8(command, tmp_path):
    (tmp_path / "img.png").write_bytes(PNG)
    line = one_line(flip(*command, cwd=tmp_path))
    assert line == "error: img.png: not UTF-8 text (byte 0x89 at offset 0)"


def test_bad_json_is_named_with_line_and_column(tmp_path):
    (tmp_path / "c.json").write_text("{\n  oops\n}")
    line = one_line(flip("site", "export-circe", "c.json", cwd=tmp_path))
    assert line.startswith("error: c.json: not valid JSON (line 2, column 3: ")


@pytest.mark.parametrize("port", ["99999", "-1", "0"])
def test_listen_refuses_a_port_out_of_range(port, tmp_path):
    done = flip("site", "listen", "hl7v2", "--port", port, "--store", "s.duckdb", cwd=tmp_path)
    assert done.returncode == 2
    assert "--port" in done.stderr and "1<=x<=65535" in done.stderr
    assert not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5"])
def test_fl_run_refuses_a_non_finite_or_negative_ditto_lambda(value, tmp_path):
    site = tmp_path / "a.csv"
    site.write_text("x,y\n1,0\n")
    done = flip(
        "fl",
        "run",
        "--site",
        str(site),
        "--target",
        "y",
        "--personal",
        "ditto",
        "--ditto-lambda",
        value,
    )
    assert done.returncode == 2
    assert "--ditto-lambda" in done.stderr and "finite" in done.stderr


def test_approve_wants_a_sha256_and_a_repeat_is_a_no_op(tmp_path):
    (tmp_path / "site.yaml").write_text("name: a\nstore: s.duckdb\nledger: l.sqlite\n")
    done = flip("site", "approve", "1", "deadbeef", cwd=tmp_path)
    assert done.returncode == 2 and "not a SHA-256" in done.stderr
    digest = "ab" * 32
    assert flip("site", "approve", "1", digest, "--by", "ann", cwd=tmp_path).returncode == 0
    again = flip("site", "approve", "1", digest, "--by", "ann", cwd=tmp_path)
    assert again.returncode == 0 and "already approved" in again.stdout
    audit = flip("site", "audit", "--json", cwd=tmp_path)
    entries = json.loads(audit.stdout)["entries"]
    assert sum(digest in json.dumps(entry) for entry in entries) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "sqlite:///img.png"], "error: --db sqlite:///img.png: cannot use the database"),
        (["--db", "notaurl"], "error: --db notaurl: not a database URL"),
        (["--signing-key", "img.png"], "error: --signing-key img.png: not an Ed25519 private key"),
    ],
)
def test_hub_serve_names_a_bad_option_in_one_line(args, message, tmp_path):
    (tmp_path / "img.png").write_bytes(PNG)
    line = one_line(flip("hub", "serve", *args, cwd=tmp_path))
    assert line.startswith(message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"], "nothing is left behind"


def test_hub_serve_with_a_vocabulary_folder_without_concepts_leaves_nothing_behind(tmp_path):
    (tmp_path / "vocab").mkdir()
    line = one_line(flip("hub", "serve", "--vocabulary", "vocab", cwd=tmp_path))
    assert line == "error: vocab: no CONCEPT.csv (an Athena download's folder)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab"], "no database, no key"


def test_hub_serve_names_a_signing_key_it_cannot_write(tmp_path):
    (tmp_path / "a-file").write_text("")
    line = one_line(flip("hub", "serve", "--signing-key", "a-file/k.pem", cwd=tmp_path))
    assert line.startswith("error: ") and line.endswith("a-file/k.pem: Not a directory")


def test_hub_serve_checks_its_port_before_it_makes_the_admin(tmp_path):
    bad = flip("hub", "serve", "--port", "-5", cwd=tmp_path)
    assert bad.returncode == 2 and "1<=x<=65535" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        line = one_line(flip("hub", "serve", "--port", port, cwd=tmp_path))
    assert (
        line == f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
    assert not (tmp_path / "hub.sqlite").exists()


def test_an_empty_optout_file_ends_no_opt_out_unless_allowed(tmp_path):
    from flip.data.cdm.store import open_store

    store = open_store(str(tmp_path / "s.duckdb"))
    store.create()
    store.close()
    (tmp_path / "list.txt").write_text("MRN1\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    load = ("site", "optout", "load", "--store", "s.duckdb", "--json")
    assert json.loads(flip(*load, "list.txt", cwd=tmp_path).stdout)["identifiers"] == 1
    line = one_line(flip(*load, "empty.txt", cwd=tmp_path))
    assert line.startswith("error: empty.txt: no identifiers")
    again = flip(*load, "list.txt", cwd=tmp_path)
    assert json.loads(again.stdout)["added"] == 0, "the list was kept"
    allowed = flip(*load, "empty.txt", "--allow-empty", cwd=tmp_path)
    assert json.loads(allowed.stdout)["removed"] == 1


def test_synth_site_replaces_its_earlier_export_and_guards_other_folders(tmp_path):
    write = ("synth", "site", "big", "--no-images", "--out")
    assert flip(*write, "D", "--patients", "5", cwd=tmp_path).returncode == 0
    (tmp_path / "D" / "extra.json").write_text("{}")
    assert flip(*write, "D", "--patients", "3", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "D" / "extra.json").exists(), "nothing of the earlier export lingers"
    line = one_line(flip(*write, "D", "--format", "csv", cwd=tmp_path))
    assert line.startswith("error: --out D: holds files that are not an earlier")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    assert one_line(flip(*write, "mine", cwd=tmp_path)).startswith("error: --out mine: holds")
    assert (tmp_path / "mine" / "keep.txt").exists()
    line = one_line(flip(*write, "", cwd=tmp_path))
    assert line == "error: --out: give a new folder's name, not the current folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "mine"]


@pytest.mark.parametrize("after", [0.4, 0.8, 1.5, 4.0])
@pytest.mark.parametrize("command", [["demo", "--out", "out"], ["site", "init"]])
def test_ctrl_c_says_interrupted_in_one_line_and_exits_130(command, after, tmp_path):
    running = subprocess.Popen(
        [sys.executable, "-m", "flip", *command],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running.wait(after)
    except subprocess.TimeoutExpired:
        running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=60)
    if running.returncode == 0 or (running.returncode == -signal.SIGINT and not err):
        pytest.skip(f"{command} finished within {after} s (or was interrupted as it ended)")
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted"
    # now and then (only under pytest so far) the interpreter ends itself by SIGINT after the
    # line: a shell reads both as "interrupted"
    assert running.returncode in (130, -signal.SIGINT), err


@pytest.mark.parametrize("seconds", ["-1", "0"])
def test_bench_hub_refuses_a_measuring_time_that_is_not_positive(seconds):
    done = flip("bench", "hub", "--seconds", seconds)
    assert done.returncode == 2 and "--seconds" in done.stderr, done.stderr


def test_site_audit_shows_what_others_put_in_a_ledger_entry_as_text(tmp_path, monkeypatch):
    """A ledger entry can quote text from elsewhere (a refusal's reason naming what a
    researcher's definition held): `flip site audit` shows it as written, never as markup
    (a `[link=…]`) nor as characters a terminal acts on (a bidi override)."""
    from flip.data.ledger import Ledger

    (tmp_path / "site.yaml").write_text("name: a\nstore: s.duckdb\nledger: l.sqlite\n")
    quoted = "no column [link=https://evil.example]age[/link] \u202egnp.exe"
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.record("query.refused", {"query": 1, "reason": quoted})
    monkeypatch.setenv("COLUMNS", "250")  # the entry on one line
    done = flip("site", "audit", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no column [link=https://evil.example]age[/link] " in done.stdout, done.stdout
    assert "\u202e" not in done.stdout and "\\u202egnp.exe" in done.stdout, done.stdout


def test_site_count_shows_a_definitions_name_as_text(tmp_path):
    """A researcher's definition names its cohort: `flip site count` run on it by a site
    admin prints the name with control characters written out."""
    store = tmp_path / "store.duckdb"
    assert flip("site", "init", "--store", str(store), cwd=tmp_path).returncode == 0
    name = "t2d\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"
    criterion = {"table": "condition_occurrence", "concept_ids": [201826]}
    (tmp_path / "d.json").write_text(json.dumps({"name": name, "include": [criterion]}))
    done = flip("site", "count", "d.json", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("t2d\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J: "), done.stdout


def test_an_error_line_shows_what_it_quotes_as_text(capsys):
    """An error may quote a file or an answer someone else wrote: its line is printed with
    control characters written out, by the site's commands and the researcher's alike."""
    from flip.cli.errors import one_line_errors
    from flip.cli.hub_session import fail

    with pytest.raises(typer.Exit), one_line_errors():
        raise ValueError("no column \x1b]52;c;cm0gLXJmIH4=\x07age")
    with pytest.raises(typer.Exit):
        fail("site st-a refused: \x1b[2Jcleared")
    printed = capsys.readouterr().err
    assert "\x1b" not in printed and "\x07" not in printed, repr(printed)
    assert "no column \\x1b]52;c;cm0gLXJmIH4=\\x07age" in printed
    assert "refused: \\x1b[2Jcleared" in printed
