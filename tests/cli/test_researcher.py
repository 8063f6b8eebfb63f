"""The researcher's commands (`flip login`, `flip project …`, `flip task`, `flip run`,
`flip models pull`) against a real hub process: what they print, save and refuse."""

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from flip.cli.app import app
from flip.fl.tasks import mace_task, task_hash
from flip.hub.client import ResearcherClient
from flip.ports import free_port
from tests.e2e.processes import Hub

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """`flip hub serve` (no Flower) with its admin's client."""
    running = Hub(tmp_path_factory.mktemp("hub"), flower=False)
    admin = ResearcherClient(running.url, running.start())
    yield running, admin
    admin.close()
    running.stop()


@pytest.fixture
def flip(tmp_path, monkeypatch):
    """Run `flip ARGS` in this process with its own config folder; (exit code, stdout, stderr)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("FLIP_CREDENTIALS", raising=False)
    runner = CliRunner()

    def call(*args: str, stdin: str | None = None):
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result.exit_code, result.stdout, result.stderr

    return call


def _one_line_error(code: int, err: str, words: str) -> None:
    assert code == 1
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert words in err, err
    assert "Traceback" not in err


def test_login_with_a_password_saves_a_private_token_the_other_commands_use(hub, flip, tmp_path):
    running, admin = hub
    admin.create_user("rosa", "researcher", password=PASSWORD)
    admin.create_site("alpha")
    admin.create_site("beta")

    code, out, err = flip("login", running.url + "/", "--user", "rosa", stdin=PASSWORD + "\n")
    assert code == 0, err
    saved = tmp_path / "config" / "flip" / "credentials.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(saved.parent).st_mode) == 0o700
    assert json.loads(saved.read_text())["hub"] == running.url
    assert "logged in to" in out

    code, out, err = flip("project", "create", "Diabetes outcomes", "--description", "HbA1c")
    assert code == 0, err
    project = int(out.split()[2].rstrip(":"))
    code, out, err = flip("project", "invite", str(project), "alpha", "beta")
    assert (code, out) == (0, "alpha: invited\nbeta: invited\n"), err
    code, out, _ = flip("project", "list", "--json")
    assert [(p["id"], p["name"], p["owner"], p["sites"]) for p in json.loads(out)] == [
        (project, "Diabetes outcomes", "rosa", 2)
    ]
    code, out, _ = flip("project", "show", str(project))
    assert code == 0 and "Diabetes outcomes" in out and "alpha" in out and "invited" in out
    evil = "[red]x[/red] [/] [link=https://evil.example]y[/link]"
    code, out, err = flip("project", "create", evil, "--json")
    assert code == 0, err
    evil_id = str(json.loads(out)["id"])
    code, out, err = flip("project", "list")
    assert code == 0 and "[/]" in out and "[link=https://evil.example]" in out, err
    code, out, err = flip("project", "show", evil_id)
    assert code == 0 and "[red]x[/red]" in out, err

    spec = mace_task()
    code, out, err = flip("task", "propose", "mace-5y", "--project", str(project), "--json")
    assert code == 0, err
    assert json.loads(out)["hash"] == task_hash(spec)
    code, out, _ = flip("project", "show", str(project), "--json")
    [task] = json.loads(out)["tasks"]
    assert task["hash"] == task_hash(spec)
    assert task["decisions"] == {"alpha": ["pending", ""], "beta": ["pending", ""]}

    code, out, err = flip(
        "run", "start", "--project", str(project), "--task", task_hash(spec), "--replies", "0"
    )
    _one_line_error(code, err, "no site joined")
    [run] = json.loads(flip("project", "show", str(project), "--json")[1])["runs"]
    assert run["status"] == "requested"
    code, out, err = flip("run", "results", str(run["id"]), "--json")
    assert code == 0 and json.loads(out)["status"] == "requested"
    assert flip("run", "stop", str(run["id"]))[0] == 0
    code, out, _ = flip("run", "watch", str(run["id"]))
    assert code == 1 and f"run {run['id']} cancelled" in out
    _one_line_error(*flip("models", "pull", str(run["id"]))[::2], "has no model at this hub")

    code, out, err = flip("logout")
    assert code == 0 and not saved.exists(), err
    _one_line_error(*flip("project", "list")[::2], "run `flip login HUB_URL` first")


def test_a_session_that_ended_or_a_role_that_may_not_get_one_clear_line(hub, flip, tmp_path):
    running, admin = hub
    admin.create_user("tess", "researcher", password=PASSWORD)
    assert flip("login", running.url, "--user", "tess", stdin=PASSWORD + "\n")[0] == 0
    saved = json.loads((tmp_path / "config" / "flip" / "credentials.json").read_text())
    session = ResearcherClient(running.url, saved["token"])
    session.logout()  # as if it expired
    session.close()
    _one_line_error(*flip("project", "list")[::2], "run `flip login HUB_URL` again")

    viewer = admin.create_user("vera", "viewer")
    assert flip("login", running.url, "--token", viewer)[0] == 0
    _one_line_error(*flip("project", "create", "x")[::2], "not allowed:")

    _one_line_error(*flip("login", running.url, "--token", "flip_u_nonsense")[::2], "flip login")


def test_a_wrong_password_or_an_unreachable_hub_fails_in_one_line(hub, flip):
    running, admin = hub
    admin.create_user("ursula", "researcher", password=PASSWORD)
    code, _, err = flip("login", running.url, "--user", "ursula", stdin="wrong password\n\n")
    _one_line_error(code, err, "wrong user name, password or one-time code")
    dead = f"http://127.0.0.1:{free_port()}"
    _one_line_error(*flip("login", dead, "--token", "x")[::2], "cannot reach the hub")


def test_bad_definition_and_task_files_are_refused_naming_the_file(hub, flip, tmp_path):
    running, admin = hub
    assert flip("login", running.url, "--token", admin.create_user("bea", "researcher"))[0] == 0
    project = flip("project", "create", "p", "--json")[1]
    pid = str(json.loads(project)["id"])
    broken = tmp_path / "cohort.json"
    broken.write_text("{not json")
    code, _, err = flip("query", "q", "--project", pid, "--definition", str(broken))
    _one_line_error(code, err, f"{broken}: not valid JSON (line 1, column 2")
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"kind": "tabular-logreg", "name": "t"}))
    _one_line_error(*flip("task", "propose", str(task), "--project", pid)[::2], f"{task}: data")
    mace = mace_task().model_dump(mode="json")
    task.write_text(json.dumps(mace | {"personal": "ditto", "ditto_lambda": -0.5}))
    refused = flip("task", "propose", str(task), "--project", pid)[::2]
    _one_line_error(*refused, f"{task}: ditto_lambda")
    _one_line_error(*flip("query", "q", "--project", pid)[::2], "give NAME, --project and")


@pytest.fixture
def served(tmp_path):
    """A fresh hub app served in this process (a registry under tmp_path) and its admin."""
    from flip.hub.app import bootstrap_admin, create_app
    from flip.hub.policy import AccessPolicy
    from flip.hub.server import BackgroundServer

    policy = AccessPolicy(password_profile="test-cheapest")
    app = create_app(
        f"sqlite:///{tmp_path / 'hub.sqlite'}", policy=policy, registry=tmp_path / "registry"
    )
    server = BackgroundServer(app).start()
    admin = ResearcherClient(server.url, bootstrap_admin(app.state.engine))
    yield app, server.url, admin
    admin.close()
    server.stop()
    app.state.engine.dispose()


def test_models_pull_gets_the_runs_model_through_the_one_model_route(served, flip, tmp_path):
    from sqlalchemy import select

    from flip.hub.db import audit

    app, url, admin = served
    rita = ResearcherClient(url, admin.create_user("rita", "researcher", PASSWORD))
    pid = rita.create_project("pulled")
    rita.propose_task(pid, "ab" * 32, "k", {})
    run = rita.create_run(pid, "ab" * 32, rounds=1)
    model = app.state.registry / "project1-run1-0123456789ab"
    model.mkdir(parents=True)
    (model / "model.pt").write_bytes(b"weights")
    (model / "lineage.json").write_text(f'{{"id": "{model.name}", "project": {pid}}}')
    rita.set_run_status(run, "failed", {"model": model.name})
    rita.close()
    assert flip("login", url, "--user", "rita", stdin=PASSWORD + "\n")[0] == 0

    code, out, err = flip("models", "pull", str(run), "--out", str(tmp_path / "mine"))
    assert (code, out) == (0, f"wrote {tmp_path / 'mine' / model.name}\n"), err
    assert (tmp_path / "mine" / model.name / "model.pt").read_bytes() == b"weights"
    _one_line_error(*flip("models", "pull", str(run), "--best")[::2], "no best-round model")
    with app.state.engine.connect() as conn:
        query = select(audit.c.detail).where(audit.c.action == "model.download")
        assert conn.execute(query).scalars().all() == ['{"format":"zip"}']


def test_project_members_are_added_and_removed_by_name(served, flip):
    _, url, admin = served
    admin.create_user("rita", "researcher", PASSWORD)
    admin.create_user("omar", "researcher")
    admin.create_user("vera", "viewer")
    admin.create_user("sam", "admin")
    assert flip("login", url, "--user", "rita", stdin=PASSWORD + "\n")[0] == 0
    project = flip("project", "create", "members", "--json")[1]
    pid = str(json.loads(project)["id"])

    code, out, err = flip("project", "member", "add", pid, "omar", "vera")
    assert (code, out) == (0, "members: omar, vera\n"), err
    _one_line_error(*flip("project", "member", "add", pid, "nobody")[::2], "no such users: nobody")
    _one_line_error(*flip("project", "member", "add", pid, "sam")[::2], "researchers and viewers")
    code, out, err = flip("project", "member", "remove", pid, "vera", "--json")
    assert (code, json.loads(out)) == (0, ["omar"]), err
    assert json.loads(flip("project", "show", pid, "--json")[1])["members"] == ["omar"]
    _one_line_error(
        *flip("project", "member", "remove", pid, "vera")[::2],
        f"not members of project {pid}: vera",
    )


def test_the_query_table_shows_a_circe_querys_attrition_per_site_and_combined():
    from rich.console import Console

    from flip.cli.query import answers_table

    answer = {
        "id": 4,
        "name": "t2dm",
        "results": {
            "north": {"count": None, "suppressed": True, "threshold": 10, "error": None},
            "south": {"count": 30, "suppressed": False, "threshold": 10, "error": None},
        },
        "pending": [],
        "total": None,
        "steps": ["primary criteria", "aged 50 or over"],
        "attrition": [200, "31+"],
    }
    answer["results"]["north"]["attrition"] = [120, "<10"]
    answer["results"]["south"]["attrition"] = [80, 30]
    console = Console(width=120, record=True)
    console.print(answers_table(answer))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "┃ step" in line)
    assert header.split() == ["┃", "step", "┃", "north", "┃", "south", "┃", "combined", "┃"]
    first = next(line for line in lines if "primary criteria" in line)
    assert [c.strip() for c in first.split("│") if c.strip()] == [
        "primary criteria",
        "120",
        "80",
        "200",
    ]
    second = next(line for line in lines if "aged 50 or over" in line)
    assert [c.strip() for c in second.split("│") if c.strip()] == [
        "aged 50 or over",
        "<10",
        "30",
        "31+",
    ]


def test_hub_connection_problems_name_the_address(hub, flip, tmp_path):
    import functools
    import http.server
    import threading

    running, _ = hub
    config = tmp_path / "site.yaml"
    config.write_text("name: a\nstore: s.duckdb\nledger: l.sqlite\n")
    enrol = ("site", "enrol", "--site-config", str(config), "--token", "nosuch", "--hub")
    code, _, err = flip(*enrol, running.url)
    _one_line_error(code, err, f"{running.url}: enrolment token unknown or already used")
    code, _, err = flip(*enrol[:-2], "0123456789abcdef", "--hub", running.url)
    _one_line_error(code, err, f"{running.url}: enrolment token unknown or already used")
    code, _, err = flip(*enrol, "http://127.0.0.1:1")
    _one_line_error(code, err, "cannot reach the hub at http://127.0.0.1:1: ")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}"
    try:
        code, _, err = flip("login", url, "--token", "abc")
        _one_line_error(code, err, f"error: {url} is not a FLIP hub (it answered 404")
        code, _, err = flip(*enrol, url)
        _one_line_error(code, err, f"error: {url} is not a FLIP hub")
    finally:
        web.shutdown()


def test_a_repeated_create_makes_no_twin_and_a_query_needs_an_invited_site(hub, flip, tmp_path):
    running, admin = hub
    assert flip("login", running.url, "--token", admin.create_user("twyla", "researcher"))[0] == 0
    first = json.loads(flip("project", "create", "twins", "--json")[1])["id"]
    code, _, err = flip("project", "create", "twins")
    _one_line_error(code, err, f"project {first} (owner twyla) is already named 'twins'")
    code, out, err = flip("project", "create", "twins", "--again", "--json")
    assert code == 0 and json.loads(out)["id"] != first, err
    cohort = tmp_path / "cohort.json"
    cohort.write_text(json.dumps({"conditions": []}))
    code, _, err = flip("query", "q", "--project", str(first), "--definition", str(cohort))
    _one_line_error(code, err, f"project {first} has no invited site to answer a query")
    assert admin.queries(first) == []
    asked = admin.query(admin.create_query(first, "api", {"conditions": []}))
    assert (asked["results"], asked["pending"], asked["total"]) == ({}, [], None)


def test_analysis_results_print_no_terminal_escape_a_site_sent(served, flip):
    """A site names Table 1's levels: `flip analysis results` shows an escape sequence or a
    newline in one as text (`\\x1b`), so a site cannot drive the researcher's terminal."""
    import httpx

    from flip.stats import describe

    _, url, admin = served
    rita = ResearcherClient(url, admin.create_user("rita", "researcher", PASSWORD))
    sites = {}
    for name in ("a", "b"):
        enrolment = admin.create_site(name)
        sites[name] = httpx.post(
            f"{url}/api/v1/sites/enrol", json={"enrolment_token": enrolment}
        ).json()["token"]
    pid = rita.create_project("escapes")
    rita.invite(pid, list(sites))
    aid = rita.submit_analysis(pid, {"kind": "table1"})["id"]
    rita.close()
    level = "\x1b]52;c;cm0gLXJmIH4=\x07yes\x1b[8m"
    values = {"a": [level] * 12 + ["no"] * 15, "b": ["no"] * 20}
    for name, token in sites.items():
        release = {"columns": {"smoker": describe.categorical_partial(values[name], 10)}}
        sent = httpx.post(
            f"{url}/api/v1/agent/analyses/{aid}",
            json={"round": 0, "release": release},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 204, sent.text
    assert flip("login", url, "--user", "rita", stdin=PASSWORD + "\n")[0] == 0
    code, out, err = flip("analysis", "results", str(aid))
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]52;c;" in out, "the level is shown, written out"
    code, out, err = flip("analysis", "results", str(aid), "--json")
    assert json.loads(out)["result"]["combined"]["smoker"]["counts"][level] == 12


def test_text_another_party_sent_reaches_no_terminal_raw(served, flip):
    """What a co-member names (a project, its description, a query) and what a run's results
    carry from its sites (their metric names, an error) is shown by `flip project`, `flip
    query` and `flip run` with control characters written out, so nobody but the researcher
    drives the researcher's terminal; --json keeps the text as sent."""
    import httpx

    _, url, admin = served
    escape = "\x1b]52;c;cm0gLXJmIH4=\x07"
    admin.create_user("ruth", "researcher", PASSWORD)
    omar = ResearcherClient(url, admin.create_user("omar", "researcher"))
    enrolment = admin.create_site("st-a")
    site = httpx.post(f"{url}/api/v1/sites/enrol", json={"enrolment_token": enrolment}).json()
    pid = omar.create_project(f"p{escape}\x1b[8m", f"line one{escape}\nline two\x1b[2J")
    omar.add_members(pid, ["ruth"])
    omar.invite(pid, ["st-a"])
    definition = {"include": [{"table": "condition_occurrence", "concept_ids": [201826]}]}
    qid = omar.create_query(pid, f"q{escape}", definition)
    as_site = {"Authorization": f"Bearer {site['token']}"}
    answer = {"count": None, "suppressed": True, "threshold": 10}
    answered = httpx.post(f"{url}/api/v1/agent/queries/{qid}", json=answer, headers=as_site)
    assert answered.status_code == 204, answered.text
    omar.propose_task(pid, "cd" * 32, "tabular-logreg", {"name": "t"})
    rid = omar.create_run(pid, "cd" * 32, 1)
    decision = {"project_id": pid, "task_hash": "cd" * 32, "decision": "approved"}
    for path, body in (("decisions", decision), (f"runs/{rid}", {"status": "joined"})):
        sent = httpx.post(f"{url}/api/v1/agent/{path}", json=body, headers=as_site)
        assert sent.status_code == 204, sent.text
    omar.set_run_status(rid, "running")
    omar.add_round(rid, 1, {f"auc{escape}": 0.5})
    omar.set_run_status(
        rid, "completed", {"per_site": {"st-a": {f"auc{escape}": 0.5}}, "error": f"e{escape}"}
    )
    omar.close()
    assert flip("login", url, "--user", "ruth", stdin=PASSWORD + "\n")[0] == 0
    for command in (
        ("project", "list"),
        ("project", "show", str(pid)),
        ("query", "--id", str(qid)),
        ("run", "results", str(rid)),
        ("run", "watch", str(rid)),
    ):
        code, out, err = flip(*command)
        assert code == 0, (command, err)
        assert "\x1b" not in out + err and "\x07" not in out + err, (command, out)
        assert "\\x1b]52;c;" in out, (command, out)
    lines = flip("project", "show", str(pid))[1].splitlines()
    assert "line one\\x1b]52;c;cm0gLXJmIH4=\\x07" in lines, "a description keeps its lines"
    assert "line two\\x1b[2J" in lines
    code, out, _ = flip("query", "--id", str(qid), "--json")
    assert json.loads(out)["name"] == f"q{escape}"


def test_a_pulled_models_card_and_lineage_reach_no_terminal_raw(flip, tmp_path):
    """A model's card and lineage come from the hub (with the sites' metric names in them):
    `flip models list` and `flip models show` print control characters in them written out."""
    folder = tmp_path / "registry" / "m1"
    folder.mkdir(parents=True)
    escape = "\x1b]52;c;cm0gLXJmIH4=\x07"
    lineage = {"task": f"t{escape}", "registered_at": "2026-12-05", "sites": {}, "metrics": {}}
    (folder / "lineage.json").write_text(json.dumps(lineage), encoding="utf-8")
    card = f"# Model card: m1\n\n| site | auc{escape} |\n|---|---|\n| st-a | 0.5 |\n"
    (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    for command in ("list", "show"):
        args = ("models", command, *(["m1"] if command == "show" else []))
        code, out, err = flip(*args, "--registry", str(tmp_path / "registry"))
        assert code == 0, err
        assert "\x1b" not in out and "\x07" not in out, (command, out)
        assert "\\x1b]52;c;" in out, (command, out)
