"""Flower's deployment engine for real: SuperLink and SuperNode processes, TLS and node auth on."""

import shutil

import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.runtime.deployment import Deployment, available
from flip.fl.runtime.flower import SuperNode
from flip.fl.tasks import mace_task, task_hash
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
    result = running.run("p", spec, rounds=2, round_timeout=90)
    assert len(result.rounds) == 2
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
    result = running.run("p", secure, rounds=2, round_timeout=90)
    assert len(result.rounds) == 2
    assert set(result.per_site) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())
    run_dir = max((running.work / "runs").iterdir())
    assert "secure_aggregation" in (run_dir / "app" / "flip_fab" / "client.py").read_text()
    assert not (run_dir / "checkpoint.pt").exists()


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


def test_a_site_that_dies_mid_run_is_left_out_of_each_round_after_its_timeout(deployment):
    """Runs last: beta's SuperNode stays down."""
    import threading
    import time

    running, spec, _ = deployment
    outcome = {}

    def run() -> None:
        outcome["result"] = running.run("p", spec, rounds=2, round_timeout=30, min_sites=1)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(3)
    running.kill_node("beta")
    thread.join(timeout=900)
    result = outcome["result"]
    assert len(result.rounds) == 2, "the run finished without the dead site"
    assert set(result.per_site) == {"alpha"}
