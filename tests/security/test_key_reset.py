"""Issue 19: lost and rotated signing keys. A site that lost its `signing.key` was refused on
every poll with no way back (no route cleared its registered key); a hub admin now clears it
(audited, over the API or `flip hub sites clear-key`), and the site's next head registers its
new key while still having to extend the heads the hub kept. The hub's own key is rotated
by `flip hub rotate-key`; sites trust the new key with `flip site trust-hub-key`.

A real hub served by uvicorn on loopback; the site's agent polls it over HTTP.
"""

import subprocess

import httpx
import pytest
from sqlalchemy import select

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import audit
from flip.hub.server import BackgroundServer
from flip.site import anchor
from flip.site.agent import SiteAgent
from flip.site.hub_client import HubClient
from tests.e2e.processes import FLIP, cli


@pytest.fixture
def world(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", signing_key=tmp_path / "hub.key")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    (tmp_path / "site").mkdir()
    site = SiteConfig(name="st-a", store="-", ledger=str(tmp_path / "site" / "ledger.sqlite"))
    client = HubClient(
        hub.url, HubClient.enrol(hub.url, admin.create_site("st-a"), anchor.public_key(site))
    )
    yield site, client, admin, app, hub
    client.close()
    admin.close()
    hub.stop()


def _audit_actions(app) -> list[str]:
    with app.state.engine.connect() as conn:
        return list(conn.execute(select(audit.c.action).order_by(audit.c.seq)).scalars())


def test_an_admin_clears_a_lost_site_key_and_the_site_anchors_again(world):
    site, client, admin, app, _ = world
    agent = SiteAgent(site, client)
    with Ledger(site.ledger) as ledger:
        ledger.record("query.answered", {"query": 1})
    assert agent.run_once() == 0
    anchor.key_path(site).unlink()  # the site lost its key; a new one is made
    with pytest.raises(httpx.HTTPStatusError, match="422"):
        anchor.anchor(site, client, agent.anchor_seq)

    _, _, _, _, hub = world
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    refused = researcher.http.delete("/sites/1/signing-key")
    assert refused.status_code == 403
    assert admin.http.delete("/sites/99/signing-key").status_code == 404
    assert admin.http.delete("/sites/1/signing-key").status_code == 204
    assert admin.http.delete("/sites/1/signing-key").status_code == 409, "none left to clear"
    assert "site.key.clear" in _audit_actions(app)

    with Ledger(site.ledger) as ledger:
        ledger.record("query.answered", {"query": 2})
    reply = anchor.anchor(site, client, agent.anchor_seq)
    assert reply["recorded"] is True and reply.get("problem") is None, "it still extends"
    assert _audit_actions(app)[-1] == "site.key.register"
    assert admin.http.get("/audit/verify").json()["ok"] is True
    researcher.close()


def test_the_cli_clears_a_site_key_on_the_hub_database(world, tmp_path):
    _, _, _, app, _ = world
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    done = cli("hub", "sites", "clear-key", "st-a", "--db", db)
    assert "st-a: signing key cleared" in done.stdout
    again = subprocess.run(
        [*FLIP, "hub", "sites", "clear-key", "st-a", "--db", db], capture_output=True, text=True
    )
    assert again.returncode == 1
    assert "site st-a has no signing key registered" in again.stderr
    assert _audit_actions(app)[-1] == "site.key.clear"


def test_the_hub_key_is_rotated_and_sites_trust_the_new_one(tmp_path, caplog):
    """The documented rotation (docs/operations.md): stop the hub, `flip hub rotate-key`,
    start it, and each site trusts the new public key; heads the sites kept under the old
    key still check out, and only heads signed by a trusted key are kept."""
    db, key = f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path / "hub.key"
    app = create_app(db, signing_key=key)
    hub = BackgroundServer(app).start()
    admin_token = bootstrap_admin(app.state.engine)
    admin = ResearcherClient(hub.url, admin_token)
    (tmp_path / "site").mkdir()
    site = SiteConfig(name="st-a", store="-", ledger=str(tmp_path / "site" / "ledger.sqlite"))
    site.save(tmp_path / "site" / "site.yaml")
    credential = HubClient.enrol(hub.url, admin.create_site("st-a"), anchor.public_key(site))
    client = HubClient(hub.url, credential)
    SiteAgent(site, client).run_once()
    old_public = cli("hub", "public-key", "--signing-key", str(key)).stdout
    client.close()
    admin.close()
    hub.stop()

    rotated = cli("hub", "rotate-key", "--signing-key", str(key))
    assert rotated.stdout != old_public and "BEGIN PUBLIC KEY" in rotated.stdout
    assert (tmp_path / "hub.key.retired.pub").read_text() == old_public
    app = create_app(db, signing_key=key)
    hub = BackgroundServer(app).start()
    client = HubClient(hub.url, credential)
    try:
        agent = SiteAgent(site, client)
        with Ledger(site.ledger) as ledger:
            kept = len(ledger.hub_heads())
        agent.run_once()
        assert "not signed by the hub key this site keeps" in caplog.text
        with Ledger(site.ledger) as ledger:
            assert len(ledger.hub_heads()) == kept, "an untrusted key's head is not kept"

        (tmp_path / "new.pub").write_text(rotated.stdout)
        site_yaml = str(tmp_path / "site" / "site.yaml")
        cli("site", "trust-hub-key", str(tmp_path / "new.pub"), "--site-config", site_yaml)
        admin = ResearcherClient(hub.url, admin_token)
        admin.create_user("vic", "viewer")  # the hub's audit, and so its head, moves on
        admin.close()
        agent.run_once()
        with Ledger(site.ledger) as ledger:
            assert len(ledger.hub_heads()) == kept + 1
            assert "hub.key.trust" in [e["action"] for e in ledger.entries()]
        assert anchor.verify(site, client) == [], "heads kept under the old key still hold"
    finally:
        client.close()
        hub.stop()
