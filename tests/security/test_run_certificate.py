"""Issue 19 item 16: a completed run ends with a certificate signed by the hub and countersigned
by each site, that `flip verify CERT` checks offline; tampering any field fails, naming it.

A deployment run over real processes ending with such a certificate is checked in
tests/e2e/test_hub_deployment.py, on the run that survives a hub crash there."""

import json

import pytest

from flip import certificate, signing
from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.privacy import PrivacySpec
from flip.fl.tasks import mace_task, task_hash
from flip.hub import certificates
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer
from flip.signing import load_or_create_key, public_pem
from flip.site import anchor
from flip.site.agent import SiteAgent
from flip.site.approvals import decide
from flip.site.hub_client import HubClient
from tests.e2e.processes import cli
from tests.security.certify import trusted_keys, verify

SITES = ("alpha", "beta")


@pytest.fixture
def certified(tmp_path):
    """A run both sites joined, its certificate issued by the hub as a completed run's is
    (from the per-site figures the sites' ClientApps reported), and the agents polled."""
    spec = mace_task().model_copy(
        update={"privacy": PrivacySpec(noise_multiplier=1.1, clipping_norm=1.0), "rounds": 3}
    )
    digest = task_hash(spec)
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", signing_key=tmp_path / "hub.key")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    project = researcher.create_project("certified")
    agents, per_site = {}, {}
    for name in SITES:
        (tmp_path / name).mkdir()
        site = SiteConfig(name=name, store="-", ledger=str(tmp_path / name / "ledger.sqlite"))
        token = admin.create_site(name)
        client = HubClient(hub.url, HubClient.enrol(hub.url, token, anchor.public_key(site)))
        agents[name] = SiteAgent(site, client)
    researcher.invite(project, list(SITES))
    researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
    for agent in agents.values():
        decide(agent.site, agent.hub, project, digest, "approved", by="site-admin")
    run = researcher.create_run(project, digest, 3, runtime="deployment")
    for i, (name, agent) in enumerate(agents.items()):
        agent.run_once()
        per_site[name] = {"data_sha256": f"{i + 1}" * 64, "n_train": 100 + i, "n_test": 30 + i}
        with Ledger(agent.site.ledger) as ledger:  # what its ClientApp logs as it evaluates
            detail = {"project": str(project), "task_hash": digest, "run": run, **per_site[name]}
            ledger.record("run.evaluated", detail)
    results = {"per_site": per_site, "model_sha256": "f" * 64}
    with app.state.engine.begin() as conn:
        certificates.issue(conn, run, results, app.state.signing_key)
    yield agents, researcher, run, per_site, spec, app
    for agent in agents.values():
        agent.hub.close()
    hub.stop()


def test_sites_countersign_and_the_certificate_verifies_offline(certified, tmp_path):
    agents, researcher, run, per_site, spec, _ = certified
    assert researcher.certificate(run)["signatures"]["sites"] == {}
    for agent in agents.values():
        agent.run_once()
    document = researcher.certificate(run)
    fields = document["fields"]
    assert set(document["signatures"]["sites"]) == set(SITES)
    assert fields["task_hash"] == task_hash(spec)
    assert fields["epsilon"] == pytest.approx(spec.privacy.epsilon(3), rel=1e-5)
    assert fields["privacy"]["noise_multiplier"] == 1.1
    assert fields["site:alpha"]["data_sha256"] == per_site["alpha"]["data_sha256"]
    assert fields["site:beta"]["approval"] == "approved"
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(document))
    site_keys = {name: anchor.key_path(agent.site) for name, agent in agents.items()}
    trusted = trusted_keys(tmp_path, tmp_path / "hub.key", site_keys)
    pinned = cli("hub", "public-key", "--signing-key", str(tmp_path / "hub.key")).stdout
    assert pinned == (tmp_path / "hub.pub").read_text() == document["fields"]["hub_key"]
    done = verify(path, *trusted)
    assert done.returncode == 0, done.stderr
    assert "countersigned by alpha, beta" in done.stdout

    tampered = {
        "task_hash": "0" * 64,
        "cohort_hash": "0" * 64,
        "epsilon": 0.01,
        "privacy": None,
        "model_sha256": "0" * 64,
        "site:alpha": {**fields["site:alpha"], "n_train": 5000},
        "site:beta": {**fields["site:beta"], "data_sha256": "0" * 64},
        "run": {**fields["run"], "rounds": 30},
    }
    for name, value in tampered.items():
        changed = {**document, "fields": {**fields, name: value}}
        path.write_text(json.dumps(changed))
        failed = verify(path, *trusted)
        assert failed.returncode == 1, name
        assert f"field {name!r} does not match its signed digest" in failed.stderr

    forged = {
        **document,
        "signatures": {**document["signatures"], "hub": document["signatures"]["sites"]["alpha"]},
    }
    path.write_text(json.dumps(forged))
    assert "the hub's signature does not verify" in verify(path, *trusted).stderr


def test_a_certificate_re_signed_with_another_key_fails_against_the_trusted_keys(
    certified, tmp_path
):
    agents, researcher, run, *_ = certified
    for agent in agents.values():
        agent.run_once()
    document = researcher.certificate(run)
    from flip.certificate import HUB, digests, signed_record
    from flip.signing import sign

    mallory = load_or_create_key(tmp_path / "mallory.key")
    fields = {**document["fields"], "model_sha256": "0" * 64, "hub_key": public_pem(mallory)}
    stated = digests(fields)
    forged = {
        "fields": fields,
        "digests": stated,
        "signatures": {**document["signatures"], "hub": sign(mallory, signed_record(HUB, stated))},
    }
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(forged))
    site_keys = {name: anchor.key_path(agent.site) for name, agent in agents.items()}
    failed = verify(path, *trusted_keys(tmp_path, tmp_path / "hub.key", site_keys))
    assert failed.returncode == 1
    assert "field 'hub_key' is not the trusted hub key" in failed.stderr
    assert "site alpha's countersignature does not verify" in failed.stderr


def test_a_site_does_not_countersign_figures_its_ledger_does_not_hold(certified):
    agents, researcher, run, *_ = certified
    with Ledger(agents["beta"].site.ledger) as ledger:  # beta's ClientApp reported other rows
        entry = ledger.entries()
    beta = agents["beta"]
    evaluated = [e for e in entry if e["action"] == "run.evaluated"][-1]
    detail = json.loads(evaluated["detail"]) | {"n_train": 7}
    with Ledger(beta.site.ledger) as ledger:
        ledger.record("run.evaluated", detail)
    for agent in agents.values():
        agent.run_once()
    assert set(researcher.certificate(run)["signatures"]["sites"]) == {"alpha"}
    with Ledger(beta.site.ledger) as ledger:
        refused = [e for e in ledger.entries() if e["action"] == "run.certificate.refused"]
    assert "n_train is 101, and this site reported 7" in refused[0]["detail"]


def test_a_site_countersigns_by_the_runs_own_evaluation(certified):
    """A site checked its part against the last evaluation of the task in any run: a later run
    of the same task made it refuse a true certificate, and a certificate carrying another
    run's figures passed. It now checks the run's own."""
    agents, researcher, run, per_site, spec, app = certified
    digest = task_hash(spec)
    project = str(researcher.run(run)["project_id"])
    beta = agents["beta"]
    with Ledger(beta.site.ledger) as ledger:  # a later run of the task, on changed data
        later = {"project": project, "task_hash": digest, "run": run + 100, "n_train": 7}
        ledger.record("run.evaluated", later | {"n_test": 3, "data_sha256": "9" * 64})
    for agent in agents.values():
        agent.run_once()
    assert set(researcher.certificate(run)["signatures"]["sites"]) == {"alpha", "beta"}

    second = researcher.create_run(int(project), digest, 3, runtime="deployment")
    for agent in agents.values():
        agent.run_once()  # both join; neither evaluates in it
    # The hub issues run 2's certificate with run 1's figures.
    with app.state.engine.begin() as conn:
        certificates.issue(conn, second, {"per_site": per_site}, app.state.signing_key)
    for agent in agents.values():
        agent.run_once()
    assert researcher.certificate(second)["signatures"]["sites"] == {}
    with Ledger(beta.site.ledger) as ledger:
        refused = [e for e in ledger.entries() if e["action"] == "run.certificate.refused"]
    assert f"records no evaluation of the task in run {second}" in refused[-1]["detail"]


def test_a_signed_certificate_without_a_run_or_sites_is_refused_not_a_crash(tmp_path):
    """Signatures over digests prove who signed, not that the record is a run's certificate."""
    key = load_or_create_key(tmp_path / "forger.key")
    fields = {"hub_key": public_pem(key), "task_hash": "a" * 64}
    digests = certificate.digests(fields)
    signature = signing.sign(key, certificate.signed_record("hub", digests))
    path = tmp_path / "cert.json"
    path.write_text(
        json.dumps({"fields": fields, "digests": digests, "signatures": {"hub": signature}})
    )

    result = verify(path)

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "field 'run' is missing" in result.stderr
    assert "the certificate names no site" in result.stderr
