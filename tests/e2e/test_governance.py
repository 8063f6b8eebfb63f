"""Hub and three site agents as separate processes on loopback: counts, decisions, a run."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import create_engine, inspect, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.hub.client import ResearcherClient
from flip.ports import free_port
from tests.conftest import build_site

FLIP = [sys.executable, "-m", "flip"]
DIABETES = {
    "name": "diabetes",
    "include": [{"table": "condition_occurrence", "concept_ids": [201826]}],
}


def _wait(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*FLIP, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.e2e
@pytest.mark.slow
def test_hub_and_agents_as_processes(tmp_path):
    configs = {
        "alpha": build_site(tmp_path, "alpha", "fhir-ndjson", 300, seed=4),
        "beta": build_site(tmp_path, "beta", "csv", 300, seed=4),
        "gamma": build_site(tmp_path, "gamma", "fhir-ndjson", 40, seed=4),
    }
    port = free_port()
    hub_db = tmp_path / "hub.sqlite"
    hub = subprocess.Popen(
        [
            *FLIP,
            "hub",
            "serve",
            "--db",
            f"sqlite:///{hub_db}",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--flower",
            "--flower-port",
            str(free_port()),
            "--flower-dir",
            str(tmp_path / "hub-flower"),
            "--round-timeout",
            "120",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    agents: list[subprocess.Popen] = []
    try:
        url = f"http://127.0.0.1:{port}"
        token = _wait(
            lambda: re.search(r"admin token .*: (\S+)", hub.stderr.readline()), "the admin token"
        ).group(1)
        _wait(
            lambda: httpx.get(f"{url}/health").status_code == 200 if _up(url) else False, "the hub"
        )
        admin = ResearcherClient(url, token)
        researcher = ResearcherClient(url, admin.create_user("rita", "researcher"))
        for name, config in configs.items():
            _cli(
                "site",
                "enrol",
                "--hub",
                url,
                "--token",
                admin.create_site(name),
                "--site-config",
                str(config),
            )
            assert oct(os.stat(config.parent / "credential").st_mode)[-3:] == "600"
            agents.append(
                subprocess.Popen(
                    [*FLIP, "site", "agent", "--site-config", str(config), "--interval", "0.2"],
                    stderr=(tmp_path / f"agent-{name}.log").open("w"),
                )
            )

        project = researcher.create_project("governance")
        researcher.invite(project, list(configs))
        query = researcher.create_query(project, "diabetes", DIABETES)

        def released():
            answer = researcher.query(query)
            return None if answer["pending"] else answer["results"]

        counts = _wait(released, "counts")
        assert counts["gamma"]["suppressed"] and counts["gamma"]["count"] is None
        assert counts["alpha"]["count"] >= 10 and counts["beta"]["count"] >= 10

        spec = mace_task()
        digest = task_hash(spec)
        researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
        _cli("site", "approve", str(project), digest, "--site-config", str(configs["alpha"]))
        _cli("site", "approve", str(project), digest, "--site-config", str(configs["beta"]))
        _cli(
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

        replies = _wait(replied, "run replies")
        assert {n: r["status"] for n, r in replies.items()} == {
            "alpha": "joined",
            "beta": "joined",
            "gamma": "refused",
        }
        gamma_store = configs["gamma"].parent / "store.duckdb"
        gamma_store.rename(gamma_store.with_suffix(".kept"))
        researcher.set_run_status(run, "running")

        def ended():
            state = researcher.run(run)
            return state if state["status"] != "running" else None

        final = _wait(ended, "the deployment run to end", timeout=900)
        assert final["status"] == "completed", final
        assert set(final["results"]["per_site"]) == {"alpha", "beta"}
        assert all(m["auroc"] > 0.6 for m in final["results"]["per_site"].values())
        assert len(final["round_metrics"]) == 3
        assert not gamma_store.exists(), "the task never opened the decliner's store"
        gamma_log = [
            e["action"] for e in Ledger(configs["gamma"].parent / "ledger.sqlite").entries()
        ]
        assert {"task.declined", "run.refused", "query.answered"} <= set(gamma_log)
    finally:
        for process in agents:
            process.send_signal(signal.SIGTERM)
        for process in agents:
            assert process.wait(timeout=15) == 0, "agents stop cleanly on SIGTERM"
        hub.terminate()
        hub.wait(timeout=15)

    assert (
        _cli("hub", "audit", "verify", "--db", f"sqlite:///{hub_db}").stdout.strip()
        == "audit log intact"
    )
    audit = json.loads(
        _cli("site", "audit", "--site-config", str(configs["gamma"]), "--json").stdout
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
    engine = create_engine(f"sqlite:///{hub_db}")
    with engine.connect() as conn:
        blob = "\n".join(
            str(v)
            for t in inspect(engine).get_table_names()
            for r in conn.execute(text(f'SELECT * FROM "{t}"'))
            for v in r
            if v is not None
        )
    assert [i for i in identifiers if i in blob] == []


def _up(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True
