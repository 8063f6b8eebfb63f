"""A deployment run the hub started outlives crashes: the hub's (it resumes from its checkpoint)
and a site's SuperNode (its agent starts it again and it rejoins), and ends with a certificate
`flip verify` checks. Cancelled, a run stops; a site disabled before that trains no more of it.
One hub and one pair of agents serve both runs, the resumed one first."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.site import anchor
from tests.conftest import build_site
from tests.e2e.processes import cli, federation, kill_matching, matching, wait_for
from tests.security.certify import trusted_keys, verify

ROUNDS = 5
SITES = ("alpha", "beta")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _trained(config, project: int) -> int:
    """How many training rounds a site's ledger records for the project."""
    entries = Ledger(config.parent / "ledger.sqlite").entries()
    return sum(
        1
        for e in entries
        if e["action"] == "run.trained" and json.loads(e["detail"])["project"] == str(project)
    )


def _two_sites(folder, patients: int, seed: int) -> dict:
    """Sites alpha and beta from CSV extracts of `patients` each, seeded apart."""
    return {
        name: build_site(folder, name, "csv", patients, seed=seed + i)
        for i, name in enumerate(SITES)
    }


def _start_run(researcher, configs, rounds: int, name: str) -> tuple[int, int]:
    """A project whose sites all approve the task, and its deployment run, running."""
    project = researcher.create_project(name)
    researcher.invite(project, list(configs))
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
    for config in configs.values():
        cli("site", "approve", str(project), digest, "--site-config", str(config))
    run = researcher.create_run(project, digest, rounds, runtime="deployment")
    wait_for(lambda: len(researcher.run(run)["sites"]) == len(configs), "the sites to join")
    researcher.set_run_status(run, "running")
    return project, run


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A hub and alpha's and beta's agents, shared by the resumed run and then the cancelled
    one (each would start the same processes); (folder, site configs, the federation)."""
    folder = tmp_path_factory.mktemp("federation")
    configs = _two_sites(folder, 120, seed=6)
    with federation(folder, configs) as made:
        yield folder, configs, made


@pytest.fixture(scope="module")
def resumed(running) -> dict:
    """A run of ROUNDS rounds whose hub is killed after two and whose alpha SuperNode is
    killed after three; the run as it ended, alpha's rounds before the crash, and its
    certificate once both sites have countersigned it."""
    _, configs, made = running
    hub, researcher = made.hub, made.researcher
    project, run = _start_run(researcher, configs, ROUNDS, "resumed")

    wait_for(lambda: len(researcher.run(run)["round_metrics"]) >= 2, "two rounds", timeout=300)
    hub.stop(kill=True)
    before = _trained(configs["alpha"], project)
    hub.start()

    wait_for(lambda: len(researcher.run(run)["round_metrics"]) >= 3, "a third round", timeout=300)
    alpha = str(configs["alpha"].resolve())
    assert kill_matching("flower-supernode", alpha) == 1, "alpha's SuperNode was running"

    def ended():
        state = researcher.run(run)
        return state if state["status"] != "running" else None

    final = wait_for(ended, "the resumed run to end", timeout=600)
    assert final["status"] == "completed", final

    def countersigned():
        found = researcher.certificate(run)
        return found if len(found["signatures"]["sites"]) == len(configs) else None

    document = wait_for(countersigned, "both sites to countersign", timeout=120)
    return {"project": project, "final": final, "before": before, "certificate": document}


@pytest.fixture(scope="module")
def cancelled(running, resumed) -> dict:
    """After the resumed run (disabling beta ends its part), a run of 100 rounds on alpha
    and beta: once it trains, beta is disabled, and a few rounds' time later the run is
    cancelled; what was seen along the way. (The two share one run: each would start the
    same processes.)"""
    folder, configs, made = running
    researcher, admin = made.researcher, made.admin
    rounds = 100
    project, run = _start_run(researcher, configs, rounds, "cancelled")
    wait_for(lambda: researcher.run(run)["round_metrics"], "a first round", timeout=300)

    def nodes() -> list[list[int]]:
        return [matching("flower-supernode", str(c.resolve())) for c in configs.values()]

    def server_app() -> list[int]:  # this hub's: its runtime API is on the SuperLink's port
        return matching("flwr-serverapp", f"127.0.0.1:{made.hub.flower_port} ")

    seen: dict = {"rounds": rounds, "trains": all(nodes()) and bool(server_app())}
    started = time.monotonic()  # round 1 has the cold start; round 2 is like any other
    wait_for(lambda: len(researcher.run(run)["round_metrics"]) >= 2, "round 2", 300)
    round_seconds = time.monotonic() - started
    seen["beta_id"] = admin.http.get("/sites/2/activity").json()["site"]
    seen["disabled"] = admin.http.post("/sites/2/disable").status_code
    seen["beta_trained"] = _trained(configs["beta"], project)
    seen["nodes"] = _flwr_nodes(folder / "hub-flower" / "flwr-home")
    # Still registered, beta's SuperNode would train a round every `round_seconds` (and the
    # run would go on); refused, it trains none, and the run waits for a second node.
    time.sleep(min(60.0, max(15.0, 3 * round_seconds)))
    seen["beta_trained_after"] = _trained(configs["beta"], project)

    researcher.set_run_status(run, "cancelled")  # it waits for beta's node otherwise
    wait_for(
        lambda: not any(nodes()) and not server_app(),
        "the SuperNodes and the ServerApp to stop",
        timeout=120,
    )
    seen["recorded"] = len(researcher.run(run)["round_metrics"])
    seen["alpha_trained"] = _trained(configs["alpha"], project)
    time.sleep(5)  # the agents poll every 0.2 s: none starts its SuperNode again
    seen["final"] = researcher.run(run)
    seen["alpha_trained_after"] = _trained(configs["alpha"], project)
    return seen


def test_a_run_survives_a_hub_crash_and_a_supernode_crash(running, resumed):
    _, configs, _ = running
    final, before = resumed["final"], resumed["before"]
    assert len(final["round_metrics"]) == ROUNDS
    assert set(final["results"]["per_site"]) == set(SITES)
    trained = _trained(configs["alpha"], resumed["project"])
    # From its checkpoint the run trains the rounds left (one may be trained twice);
    # started over it would train all ROUNDS again on top of those before the crash.
    assert before >= 2
    assert trained <= ROUNDS + 1 < before + ROUNDS


def test_the_resumed_run_ends_with_a_verifiable_certificate(running, resumed, tmp_path):
    """Once the sites countersign, `flip verify` accepts the certificate with the hub's and
    the sites' keys, and names a field changed after signing."""
    folder, configs, _ = running
    document, final = resumed["certificate"], resumed["final"]
    per_site = final["results"]["per_site"]
    for name in SITES:
        mine = document["fields"][f"site:{name}"]
        assert mine["data_sha256"] == per_site[name]["data_sha256"]
        assert mine["n_train"] == per_site[name]["n_train"] > 0
    assert document["fields"]["model_sha256"] == final["results"]["model_sha256"]
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(document))
    site_keys = {n: anchor.key_path(SiteConfig.load(c)) for n, c in configs.items()}
    trusted = trusted_keys(tmp_path, folder / "hub-signing.key", site_keys)
    done = verify(path, *trusted)
    assert done.returncode == 0, done.stderr
    path.write_text(json.dumps({**document, "fields": {**document["fields"], "epsilon": 1.0}}))
    failed = verify(path, *trusted)
    assert "field 'epsilon' does not match its signed digest" in failed.stderr


def test_a_cancelled_run_stops_on_the_superlink_and_at_the_sites(cancelled):
    assert cancelled["trains"], "the run trains before it is cancelled"
    final, rounds = cancelled["final"], cancelled["rounds"]
    assert final["status"] == "cancelled"
    assert len(final["round_metrics"]) == cancelled["recorded"] < rounds
    assert cancelled["alpha_trained_after"] == cancelled["alpha_trained"] < rounds
    assert final["results"] is None, "a cancelled run registers no model"


def test_a_disabled_sites_supernode_trains_no_more_rounds_of_a_run_it_joined(cancelled):
    """Disabling shut a site's agent out, but its SuperNode's key stayed registered at the
    hub's SuperLink, so the SuperNode went on training the run it had joined. The hub now
    unregisters the key: the SuperLink refuses the node, and it gets no more work."""
    assert cancelled["beta_id"] == "beta"
    assert cancelled["disabled"] == 204
    nodes = cancelled["nodes"]
    assert sorted(n["status"] for n in nodes) == ["online", "unregistered"], nodes
    trained = cancelled["beta_trained"]
    assert cancelled["beta_trained_after"] <= trained + 1, "a round in flight at most"


def _flwr_nodes(home) -> list[dict]:
    """The SuperNodes the hub's SuperLink knows, unregistered ones too."""
    env = {**os.environ, "FLWR_HOME": str(home)}
    listed = subprocess.run(
        [
            str(Path(sys.executable).parent / "flwr"),
            "supernode",
            "list",
            "flip",
            "-v",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return json.loads(listed.stdout[listed.stdout.find("{") :])["nodes"]
