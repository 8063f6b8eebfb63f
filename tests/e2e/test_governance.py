"""Hub and three site agents as separate processes on loopback: counts, decisions, a run;
and a researcher's whole journey with the `flip` command against the same federation: log
in, ask counts, propose, run, watch, read results, pull the model. The two share one hub
and its agents (a module fixture), each in a project of its own, and one deployment run:
the journey's, which the first test also checks from the hub's and the sites' side."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.fl.registry import load
from flip.fl.tasks import mace_task, task_hash
from tests.conftest import build_site
from tests.e2e.processes import cli, federation, wait_for

PASSWORD = "correct horse battery"
DIABETES = {
    "name": "diabetes",
    "include": [{"table": "condition_occurrence", "concept_ids": [201826]}],
}

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The folder, and three sites: alpha and beta large enough to count, gamma too small."""
    folder = tmp_path_factory.mktemp("governance")
    return folder, {
        "alpha": build_site(folder, "alpha", "fhir-ndjson", 300, seed=4),
        "beta": build_site(folder, "beta", "csv", 300, seed=4),
        "gamma": build_site(folder, "gamma", "fhir-ndjson", 40, seed=4),
    }


@pytest.fixture(scope="module")
def running(sites):
    """A hub with Flower and the three sites' agents, for the module (they must stop cleanly)."""
    folder, configs = sites
    with federation(folder, configs) as started:
        yield started


def as_researcher(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`flip ARGS` as the researcher (their own config folder); it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "flip", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        input=stdin,
    )
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class Journey:
    """What the researcher's `flip` commands printed, and what the run left behind."""

    folder: Path
    project: str
    digest: str
    asked: str
    answers: dict
    proposed: str
    started: dict
    watched: list[dict]
    shown: str
    pulled: str
    lineage: dict
    #: Whether gamma's store (moved aside while the run ran) was recreated by the run.
    gamma_store_opened: bool


@pytest.fixture(scope="module")
def journey(sites, running, tmp_path_factory) -> Journey:
    """A researcher's whole journey with the `flip` command, two rounds on the deployment;
    gamma (which declines) has its store moved aside while the run runs."""
    _, configs = sites
    folder = tmp_path_factory.mktemp("rosa")
    env = os.environ | {"XDG_CONFIG_HOME": str(folder / "rita-config"), "COLUMNS": "120"}
    env.pop("FLIP_CREDENTIALS", None)
    definition = folder / "diabetes.json"
    definition.write_text(json.dumps(DIABETES))
    running.admin.create_user("rosa", "researcher", password=PASSWORD)
    as_researcher(env, "login", running.hub.url, "--user", "rosa", stdin=PASSWORD + "\n")
    made = as_researcher(env, "project", "create", "journey", "--json").stdout
    project = str(json.loads(made)["id"])
    as_researcher(env, "project", "invite", project, *configs)
    asked = as_researcher(
        env, "query", "diabetics", "--project", project, "--definition", str(definition)
    ).stdout
    query = as_researcher(env, "project", "show", project, "--json").stdout
    [listed] = json.loads(query)["queries"]
    answers = json.loads(as_researcher(env, "query", "--id", str(listed["id"]), "--json").stdout)

    digest = task_hash(mace_task())
    proposed = as_researcher(env, "task", "propose", "mace-5y", "--project", project).stdout
    cli("site", "approve", project, digest, "--site-config", str(configs["alpha"]))
    cli("site", "approve", project, digest, "--site-config", str(configs["beta"]))
    gamma = str(configs["gamma"])
    cli("site", "decline", project, digest, "--reason", "not now", "--site-config", gamma)

    gamma_store = configs["gamma"].parent / "store.duckdb"
    gamma_store.rename(gamma_store.with_suffix(".kept"))
    try:
        start = ["run", "start", "--project", project, "--task", digest, "--rounds", "2"]
        started = json.loads(as_researcher(env, *start, "--json").stdout)
        run = str(started["id"])
        watched = as_researcher(env, "run", "watch", run, "--json", "--interval", "1").stdout
    finally:
        gamma_store_opened = gamma_store.exists()
        gamma_store.with_suffix(".kept").replace(gamma_store)  # gamma counts for the next test
    lines = [json.loads(line) for line in watched.splitlines()]
    shown = as_researcher(env, "run", "results", run).stdout
    model = lines[-1]["results"]["model"]
    pulled = as_researcher(env, "models", "pull", run, "--out", str(folder / "mine")).stdout
    lineage = json.loads(
        as_researcher(
            env, "models", "show", model, "--registry", str(folder / "mine"), "--json"
        ).stdout
    )
    as_researcher(env, "logout")
    return Journey(
        folder,
        project,
        digest,
        asked,
        answers,
        proposed,
        started,
        lines,
        shown,
        pulled,
        lineage,
        gamma_store_opened,
    )


@pytest.mark.timeout(1800)  # three sites built, then a deployment run: long on a busy machine
def test_hub_and_agents_as_processes(sites, running, journey):
    folder, configs = sites
    hub, researcher = running.hub, running.researcher
    for config in configs.values():
        assert oct(os.stat(config.parent / "credential").st_mode)[-3:] == "600"

    project = researcher.create_project("governance")
    researcher.invite(project, list(configs))
    query = researcher.create_query(project, "diabetes", DIABETES)

    def released():
        answer = researcher.query(query)
        return None if answer["pending"] else answer["results"]

    counts = wait_for(released, "counts")
    assert counts["gamma"]["suppressed"] and counts["gamma"]["count"] is None
    assert counts["alpha"]["count"] >= 10 and counts["beta"]["count"] >= 10

    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
    cli("site", "approve", str(project), digest, "--site-config", str(configs["alpha"]))
    cli("site", "approve", str(project), digest, "--site-config", str(configs["beta"]))
    cli(
        "site",
        "decline",
        str(project),
        digest,
        "--reason",
        "not this year",
        "--site-config",
        str(configs["gamma"]),
    )
    run = researcher.create_run(project, digest, 3, runtime="deployment")

    def replied():
        sites = researcher.run(run)["sites"]
        return sites if len(sites) == 3 else None

    replies = wait_for(replied, "run replies")
    assert {n: r["status"] for n, r in replies.items()} == {
        "alpha": "joined",
        "beta": "joined",
        "gamma": "refused",
    }
    # The module's one deployment run is the journey's (started the same way, through the
    # client's create_run and set_run_status): this run is cancelled before it starts.
    researcher.set_run_status(run, "cancelled")
    assert researcher.run(run)["status"] == "cancelled"

    final = running.admin.run(int(journey.started["id"]))
    assert final["status"] == "completed", final
    assert set(final["results"]["per_site"]) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in final["results"]["per_site"].values())
    assert len(final["round_metrics"]) == 2
    model = load(folder / "hub-flower" / "models", final["results"]["model"])
    assert model.lineage["task_hash"] == digest and model.lineage["run"] == final["id"]
    assert set(model.lineage["sites"]) == {"alpha", "beta"}
    # released like a count, or withheld (left out) by the site's differencing guard
    assert all(s.get("n_train", 1) > 0 for s in model.lineage["sites"].values())
    assert (model.path / "MODEL_CARD.md").exists()
    best = load(folder / "hub-flower" / "models", final["results"]["best_model"])
    assert best.lineage["final_model"] == model.id and 1 <= best.lineage["best_round"] <= 2
    assert not journey.gamma_store_opened, "the task never opened the decliner's store"
    gamma_log = [e["action"] for e in Ledger(configs["gamma"].parent / "ledger.sqlite").entries()]
    assert {"task.declined", "run.refused", "query.answered"} <= set(gamma_log)

    assert cli("hub", "audit", "verify", "--db", hub.db).stdout.strip() == "audit log intact"
    audit = json.loads(
        cli("site", "audit", "--site-config", str(configs["gamma"]), "--json").stdout
    )
    assert audit["broken_at"] is None
    identifiers = set()
    for config in configs.values():
        store = open_store(next(config.parent.glob("store.*")), read_only=True)
        with store.connect() as conn:
            for row in conn.execute(
                select(schema.person.c.person_id, schema.person.c.person_source_value)
            ):
                identifiers.update({str(row.person_id), row.person_source_value})
        store.close()
    engine = create_engine(hub.db)
    with engine.connect() as conn:
        blob = "\n".join(
            str(v)
            for t in inspect(engine).get_table_names()
            for r in conn.execute(text(f'SELECT * FROM "{t}"'))
            for v in r
            if v is not None
        )
    assert [i for i in identifiers if i in blob] == []


def test_a_researcher_does_the_journey_with_the_flip_command(journey):
    asked, answers = journey.asked, journey.answers
    assert "<10" in asked and "withheld" in asked, asked
    assert answers["pending"] == [] and answers["total"] is None
    assert answers["results"]["gamma"]["suppressed"]
    assert answers["results"]["gamma"]["count"] is None
    assert all(answers["results"][s]["count"] >= 10 for s in ("alpha", "beta"))
    assert journey.digest in journey.proposed

    started = journey.started
    assert started["status"] == "running"
    assert {n: s["status"] for n, s in started["sites"].items()} == {
        "alpha": "joined",
        "beta": "joined",
        "gamma": "refused",
    }
    lines = journey.watched
    assert [line.get("round") for line in lines[:-1]] == [1, 2]
    assert lines[-1]["status"] == "completed", lines[-1]
    assert "alpha" in journey.shown and "beta" in journey.shown and "auroc" in journey.shown
    model = lines[-1]["results"]["model"]
    assert journey.pulled.strip() == f"wrote {journey.folder / 'mine' / model}"
    lineage = journey.lineage
    assert lineage["task_hash"] == journey.digest and lineage["run"] == int(started["id"])
    assert set(lineage["sites"]) == {"alpha", "beta"}
