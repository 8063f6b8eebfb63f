"""Flower's deployment engine for real: SuperLink and SuperNode processes, TLS and node auth on."""

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
import torch

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.personal import own_keys as personal_keys
from flip.fl.runtime.deployment import Deployment, available
from flip.fl.runtime.flower import SuperNode
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import IN_CI, build_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    if not available():
        if IN_CI:
            pytest.fail("flower-superlink, flower-supernode and flwr must be installed in CI")
        pytest.skip("Flower's deployment commands are not installed")
    root = tmp_path_factory.mktemp("deployment")
    spec = mace_task()
    sites = {}
    for name, fmt in (("alpha", "fhir-ndjson"), ("beta", "csv"), ("gamma", "csv")):
        config = build_site(root, name, fmt, 300)
        if name != "gamma":
            Ledger(SiteConfig.load(config).ledger).decide("p", task_hash(spec), "approved", by="x")
        sites[name] = config
    gamma_store = root / "gamma" / "store.duckdb"
    shutil.move(gamma_store, root / "gamma-store-moved-away.duckdb")
    with Deployment(root / "flower", sites) as running:
        yield running, spec, gamma_store


def test_a_run_sent_straight_to_the_superlink_gets_nothing_from_an_unapproving_site(deployment):
    running, spec, gamma_store = deployment
    assert running.tls_files is not None and running.node_auth
    result = running.run("p", spec, rounds=1, round_timeout=90)
    assert len(result.rounds) == 1
    assert set(result.per_site) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())
    assert result.scaling is not None, "the sites' sums and counts gave the run its scaling"
    assert not gamma_store.exists(), "the task never opened gamma's store"
    gamma = Ledger(running.sites["gamma"].parent / "ledger.sqlite")
    assert any(e["action"] == "run.refused" for e in gamma.entries())


def test_a_secure_aggregation_task_runs_under_secagg_in_a_deployment(deployment):
    running, spec, _ = deployment
    secure = spec.model_copy(update={"secure_aggregation": True})
    for name in ("alpha", "beta"):
        ledger = Ledger(SiteConfig.load(running.sites[name]).ledger)
        ledger.decide("p", task_hash(secure), "approved", by="x")
    result = running.run("p", secure, rounds=1, round_timeout=90)
    assert len(result.rounds) == 1
    assert set(result.per_site) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())
    run_dir = max((running.work / "runs").iterdir())
    assert "secure_aggregation" in (run_dir / "app" / "flip_fab" / "client.py").read_text()
    assert not (run_dir / "checkpoint.pt").exists()


def test_a_personalised_task_keeps_each_sites_norm_across_rounds_and_carries_evaluation(
    deployment,
):
    """FedBN in a real deployment: each site's batch norm stays in its node state from one
    message to the next (and in a private file beside its ledger, whose digest its ledger
    records) and never reaches the server; round 1 is scored by the next train reply,
    round 2 and the test split by evaluate messages."""
    running, spec, _ = deployment
    personal = spec.model_copy(update={"personal": "fedbn"})
    digest = task_hash(personal)
    ledgers = {n: Ledger(SiteConfig.load(running.sites[n]).ledger) for n in ("alpha", "beta")}
    for ledger in ledgers.values():
        ledger.decide("p", digest, "approved", by="x")
    result = running.run("p", personal, rounds=2, round_timeout=90, evaluate_every=2)

    assert len(result.rounds) == 2
    scores = [r["auroc"] for r in result.rounds]
    assert result.best_round == 1 + scores.index(max(scores)), "chosen by validation score"
    assert all({"auroc", "personal_auroc"} <= set(r) for r in result.rounds)
    assert set(result.per_site) == {"alpha", "beta"}
    assert all("personal_auroc" in m for m in result.per_site.values())
    kept = [
        (r["personal_auroc"], r["personal_accuracy"]) != (r["auroc"], r["accuracy"])
        for r in result.rounds
    ]
    assert any(kept), "a site's personal model has its own norm, kept from an earlier message"
    norm = personal_keys(new_model(personal), "fedbn")
    start = new_model(personal).state_dict()
    for key in norm:
        got, first = result.state_dict[key].double(), start[key].double()
        assert torch.allclose(got, first, atol=1e-6), (
            "the norms never left the sites: the global one is the one they received"
        )
    for name, ledger in ledgers.items():
        evaluated = [
            e for e in ledger.entries() if e["action"] == "run.evaluated" and digest in e["detail"]
        ]
        assert len(evaluated) == 2, "evaluate messages after round 2 and for the test split"
        assert ledger.rounds_counted("p", digest, "evaluate") == 3, (
            "two validation scores (one carried by a train reply) and the test split's"
        )
        trained = [
            json.loads(e["detail"])
            for e in ledger.entries()
            if e["action"] == "run.trained" and digest in e["detail"]
        ]
        folder = Path(SiteConfig.load(running.sites[name]).ledger).parent / "personal"
        files = list(folder.glob("*.pt"))
        assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600, (
            "each site keeps its own norm in one private file beside its ledger"
        )
        assert hashlib.sha256(files[0].read_bytes()).hexdigest() == trained[-1]["own"]


def test_an_unregistered_supernode_is_refused(deployment, tmp_path):
    running, _, _ = deployment
    from flip.fl.runtime.credentials import make_node_key

    stranger, _ = make_node_key(tmp_path, "stranger")
    alpha = running.nodes["alpha"]
    node = SuperNode(
        tmp_path,
        "stranger",
        alpha.site_config,
        alpha.superlink,
        root_certificates=alpha.root_certificates,
        key=stranger,
    )
    try:
        node.start()
        assert node.process.wait(timeout=60) != 0, "the SuperLink refuses an unknown node key"
    finally:
        node.kill()


def _entries(config: Path, action: str, digest: str) -> int:
    """How many `action` entries a site's ledger holds for the task `digest`."""
    entries = Ledger(SiteConfig.load(config).ledger).entries()
    return sum(e["action"] == action and digest in e["detail"] for e in entries)


#: Seconds a site's reply takes at most to reach the SuperLink once its ledger records the
#: answer (killed sooner, the SuperLink loses the reply: "the object could not be found").
UPLOAD_GRACE = 10


def test_a_site_that_dies_mid_run_is_left_out_of_the_rest_of_the_run(deployment):
    """Runs last: beta's SuperNode stays down. Beta dies once it has answered the run's
    first message (its statistics); the rounds after leave it out, after the round timeout
    or once the SuperLink has missed its heartbeats, whichever comes first. (The round
    timeout alone is tested in tests/fl/test_federation.py.)"""
    import threading
    import time

    from tests.e2e.processes import wait_for

    running, spec, _ = deployment
    beta = running.sites["beta"]
    answered = _entries(beta, "run.stats", task_hash(spec))
    outcome = {}

    def run() -> None:
        try:
            outcome["result"] = running.run("p", spec, rounds=2, round_timeout=90, min_sites=1)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(
        lambda: "error" in outcome or _entries(beta, "run.stats", task_hash(spec)) > answered,
        "beta to answer the run's first message",
        timeout=300,
    )
    time.sleep(UPLOAD_GRACE)  # the ledger records the answer before its reply is uploaded
    running.kill_node("beta")
    thread.join(timeout=600)
    assert not thread.is_alive(), "the run did not end within 600 s of beta's death"
    assert "error" not in outcome, f"the run failed: {outcome.get('error')!r}"
    result = outcome["result"]
    assert len(result.rounds) == 2, "the run finished without the dead site"
    assert set(result.per_site) == {"alpha"}
