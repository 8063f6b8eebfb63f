"""Hub and three site agents as separate processes on loopback: counts, decisions, a run."""

import json
import os

import pytest
from sqlalchemy import create_engine, inspect, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.fl.registry import load
from flip.fl.tasks import mace_task, task_hash
from tests.conftest import build_site
from tests.e2e.processes import cli, federation, wait_for

DIABETES = {
    "name": "diabetes",
    "include": [{"table": "condition_occurrence", "concept_ids": [201826]}],
}


@pytest.mark.e2e
@pytest.mark.slow
def test_hub_and_agents_as_processes(tmp_path):
    configs = {
        "alpha": build_site(tmp_path, "alpha", "fhir-ndjson", 300, seed=4),
        "beta": build_site(tmp_path, "beta", "csv", 300, seed=4),
        "gamma": build_site(tmp_path, "gamma", "fhir-ndjson", 40, seed=4),
    }
    with federation(tmp_path, configs) as running:
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
        gamma_store = configs["gamma"].parent / "store.duckdb"
        gamma_store.rename(gamma_store.with_suffix(".kept"))
        researcher.set_run_status(run, "running")

        def ended():
            state = researcher.run(run)
            return state if state["status"] != "running" else None

        final = wait_for(ended, "the deployment run to end", timeout=900)
        assert final["status"] == "completed", final
        assert set(final["results"]["per_site"]) == {"alpha", "beta"}
        assert all(m["auroc"] > 0.6 for m in final["results"]["per_site"].values())
        assert len(final["round_metrics"]) == 3
        model = load(tmp_path / "hub-flower" / "models", final["results"]["model"])
        assert model.lineage["task_hash"] == digest and model.lineage["run"] == run
        assert set(model.lineage["sites"]) == {"alpha", "beta"}
        # released like a count, or withheld (left out) by the site's differencing guard
        assert all(s.get("n_train", 1) > 0 for s in model.lineage["sites"].values())
        assert (model.path / "MODEL_CARD.md").exists()
        best = load(tmp_path / "hub-flower" / "models", final["results"]["best_model"])
        assert best.lineage["final_model"] == model.id and 1 <= best.lineage["best_round"] <= 3
        assert not gamma_store.exists(), "the task never opened the decliner's store"
        gamma_log = [
            e["action"] for e in Ledger(configs["gamma"].parent / "ledger.sqlite").entries()
        ]
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
