"""A researcher's whole journey with the `flip` command against a hub and three site agents,
all separate processes: log in, ask counts, propose, run, watch, read results, pull the model."""

import json
import os
import subprocess
import sys

import pytest

from flip.fl.tasks import mace_task, task_hash
from tests.conftest import build_site
from tests.e2e.processes import cli, federation

PASSWORD = "correct horse battery"
DIABETES = {
    "name": "diabetes",
    "include": [{"table": "condition_occurrence", "concept_ids": [201826]}],
}


def researcher(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
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


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1800)  # three sites built, then a deployment run: long on a busy machine
def test_a_researcher_does_the_journey_with_the_flip_command(tmp_path):
    configs = {
        "alpha": build_site(tmp_path, "alpha", "fhir-ndjson", 300, seed=4),
        "beta": build_site(tmp_path, "beta", "csv", 300, seed=4),
        "gamma": build_site(tmp_path, "gamma", "fhir-ndjson", 40, seed=4),
    }
    env = os.environ | {"XDG_CONFIG_HOME": str(tmp_path / "rita-config"), "COLUMNS": "120"}
    env.pop("FLIP_CREDENTIALS", None)
    definition = tmp_path / "diabetes.json"
    definition.write_text(json.dumps(DIABETES))
    with federation(tmp_path, configs) as running:
        running.admin.create_user("rosa", "researcher", password=PASSWORD)
        researcher(env, "login", running.hub.url, "--user", "rosa", stdin=PASSWORD + "\n")
        made = researcher(env, "project", "create", "governance", "--json").stdout
        project = str(json.loads(made)["id"])
        researcher(env, "project", "invite", project, *configs)

        asked = researcher(
            env, "query", "diabetics", "--project", project, "--definition", str(definition)
        ).stdout
        assert "<10" in asked and "withheld" in asked, asked
        query = researcher(env, "project", "show", project, "--json").stdout
        [listed] = json.loads(query)["queries"]
        answers = json.loads(researcher(env, "query", "--id", str(listed["id"]), "--json").stdout)
        assert answers["pending"] == [] and answers["total"] is None
        assert answers["results"]["gamma"]["suppressed"]
        assert answers["results"]["gamma"]["count"] is None
        assert all(answers["results"][s]["count"] >= 10 for s in ("alpha", "beta"))

        digest = task_hash(mace_task())
        proposed = researcher(env, "task", "propose", "mace-5y", "--project", project).stdout
        assert digest in proposed
        cli("site", "approve", project, digest, "--site-config", str(configs["alpha"]))
        cli("site", "approve", project, digest, "--site-config", str(configs["beta"]))
        gamma = str(configs["gamma"])
        cli("site", "decline", project, digest, "--reason", "not now", "--site-config", gamma)

        start = ["run", "start", "--project", project, "--task", digest, "--rounds", "2"]
        started = json.loads(researcher(env, *start, "--json").stdout)
        run = str(started["id"])
        assert started["status"] == "running"
        assert {n: s["status"] for n, s in started["sites"].items()} == {
            "alpha": "joined",
            "beta": "joined",
            "gamma": "refused",
        }
        watched = researcher(env, "run", "watch", run, "--json", "--interval", "1").stdout
        lines = [json.loads(line) for line in watched.splitlines()]
        assert [line.get("round") for line in lines[:-1]] == [1, 2]
        assert lines[-1]["status"] == "completed", lines[-1]

        shown = researcher(env, "run", "results", run).stdout
        assert "alpha" in shown and "beta" in shown and "auroc" in shown
        model = lines[-1]["results"]["model"]
        pulled = researcher(env, "models", "pull", run, "--out", str(tmp_path / "mine")).stdout
        assert pulled.strip() == f"wrote {tmp_path / 'mine' / model}"
        lineage = json.loads(
            researcher(
                env, "models", "show", model, "--registry", str(tmp_path / "mine"), "--json"
            ).stdout
        )
        assert lineage["task_hash"] == digest and lineage["run"] == int(run)
        assert set(lineage["sites"]) == {"alpha", "beta"}
        researcher(env, "logout")
