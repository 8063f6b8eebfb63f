"""Issue 19 item 9: the audit chains are anchored across sides, so truncation and a recomputed
chain are seen by the side that did not make them, and approvals are covered by the chain.

A real hub served by uvicorn on loopback; the site's agent polls it over HTTP.
"""

import sqlite3
import stat
from pathlib import Path

import orjson
import pytest
from sqlalchemy import delete, select, update

from flip.config import SiteConfig, SitePolicy
from flip.data.ledger import Ledger, LedgerTampered
from flip.data.ledger import approvals as ledger_approvals
from flip.data.ledger import audit as ledger_audit
from flip.fl.client import NotApproved, authorise
from flip.fl.tasks import mace_task, task_hash
from flip.hashchain import GENESIS, entry_hash
from flip.hub import audit as hub_chain
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import audit as hub_audit
from flip.hub.server import BackgroundServer
from flip.site import anchor
from flip.site.agent import SiteAgent
from flip.site.hub_client import HubClient


@pytest.fixture
def world(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", signing_key=tmp_path / "hub.key")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    site = SiteConfig(
        name="st-a",
        store=str(tmp_path / "store.duckdb"),
        ledger=str(tmp_path / "site" / "ledger.sqlite"),
        policy=SitePolicy(allowed_task_kinds=["tabular-logreg"]),
    )
    (tmp_path / "site").mkdir()
    token = admin.create_site("st-a")
    client = HubClient(hub.url, HubClient.enrol(hub.url, token, anchor.public_key(site)))
    yield site, client, admin, app
    client.close()
    admin.close()
    hub.stop()


def _poll(agent: SiteAgent, ledger: Ledger, n: int) -> None:
    """Append `n` entries to the site's ledger, then let the agent anchor its head."""
    for i in range(n):
        ledger.record("query.answered", {"query": i})
    agent.run_once()


def _hub_verdict(admin: ResearcherClient) -> dict:
    return admin.http.get("/audit/verify").json()


def _rechain(path: str, table: str, fields: tuple[str, ...], start: int) -> None:
    """What a tamperer does after editing row `start`: recompute every hash from there on."""
    db = sqlite3.connect(path)
    rows = db.execute(f"SELECT {', '.join(fields)}, hash FROM {table} ORDER BY seq").fetchall()
    previous = GENESIS
    for row in rows:
        entry = dict(zip(fields, row[:-1], strict=True))
        digest = entry_hash(previous, entry) if entry["seq"] >= start else row[-1]
        db.execute(f"UPDATE {table} SET hash = ? WHERE seq = ?", (digest, entry["seq"]))
        previous = digest
    db.commit()
    db.close()


def test_signing_keys_are_private_files(world, tmp_path):
    site, client, _, _ = world
    SiteAgent(site, client).run_once()
    for path in (tmp_path / "hub.key", anchor.key_path(site)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_truncated_site_ledger_is_seen_by_the_hub(world):
    site, client, admin, _ = world
    agent = SiteAgent(site, client)
    with Ledger(site.ledger) as ledger:
        _poll(agent, ledger, 5)
        assert _hub_verdict(admin)["ok"] is True
        with ledger.engine.begin() as conn:
            conn.execute(delete(ledger_audit).where(ledger_audit.c.seq > 3))
        assert ledger.verify() is None  # the chain alone cannot see a cut end
    problem = anchor.anchor(site, client, agent.anchor_seq)["problem"]
    assert problem is not None and problem.startswith("truncated: entry 5")
    verdict = _hub_verdict(admin)
    assert verdict["ok"] is False
    assert verdict["site_ledgers"][0]["site"] == "st-a"
    assert verdict["site_ledgers"][0]["problem"].startswith("truncated")


def test_an_edited_and_recomputed_site_ledger_is_seen_by_the_hub_after_an_agent_restart(world):
    site, client, admin, _ = world
    agent = SiteAgent(site, client)
    with Ledger(site.ledger) as ledger:
        _poll(agent, ledger, 4)
        with ledger.engine.begin() as conn:
            conn.execute(
                update(ledger_audit)
                .where(ledger_audit.c.seq == 2)
                .values(detail=orjson.dumps({"query": 99}).decode())
            )
        _rechain(site.ledger, "audit", ("seq", "at", "action", "detail"), start=2)
        assert ledger.verify() is None  # recomputed: the chain holds on its own
        ledger.record("query.answered", {"query": 5})
    restarted = SiteAgent(site, client)  # knows nothing of the head the hub kept
    restarted.run_once()
    breaks = _hub_verdict(admin)["site_ledgers"]
    assert [b["problem"][:9] for b in breaks] == ["rewritten"]
    assert "entry 4" in breaks[0]["problem"]


def test_an_approval_edited_outside_the_ledger_is_refused_before_the_client_app_reads(world):
    site, _, _, _ = world
    spec = mace_task()
    digest = task_hash(spec)
    config = {"task": spec.model_dump_json(), "project": "1", "task-hash": digest}
    with Ledger(site.ledger) as ledger:
        ledger.decide("1", digest, "declined", "site-admin", "not this one")
        with ledger.engine.begin() as conn:
            conn.execute(update(ledger_approvals).values(decision="approved", reason=""))
        with pytest.raises(LedgerTampered, match="not the decision the audit chain records"):
            ledger.is_approved("1", digest)
    with pytest.raises(NotApproved, match="not the decision the audit chain records"):
        authorise(site, config)
    assert anchor.verify(site, None) == [
        "site ledger: the approval of task "
        f"{digest[:12]}… for project 1 is not the decision the audit chain records "
        "(edited, added or removed outside the ledger)"
    ]


def test_an_approval_row_added_outside_the_ledger_is_refused(world):
    site, _, _, _ = world
    spec = mace_task()
    digest = task_hash(spec)
    config = {"task": spec.model_dump_json(), "project": "1", "task-hash": digest}
    with Ledger(site.ledger) as ledger, ledger.engine.begin() as conn:
        conn.execute(
            ledger_approvals.insert().values(
                project="1",
                task_hash=digest,
                decision="approved",
                reason="",
                decided_by="site-admin",
                decided_at="2026-12-01T00:00:00+00:00",
            )
        )
    with pytest.raises(NotApproved, match="not the decision the audit chain records"):
        authorise(site, config)
    with Ledger(site.ledger) as ledger:
        assert ledger.entries()[-1]["action"] == "run.refused"


def test_a_truncated_or_rewritten_hub_audit_is_seen_by_the_site(world):
    site, client, admin, app = world
    for name in ("a", "b", "c"):
        admin.create_user(name, "viewer")
    agent = SiteAgent(site, client)
    agent.run_once()
    assert anchor.verify(site, client) == []
    with app.state.engine.begin() as conn:
        end = conn.execute(select(hub_audit.c.seq).order_by(hub_audit.c.seq.desc())).first()[0]
        conn.execute(delete(hub_audit).where(hub_audit.c.seq == end))
    assert [p[:24] for p in anchor.verify(site, client)] == ["hub audit truncated: ent"]
    admin.create_user("d", "viewer")  # the chain grows back over the cut
    with app.state.engine.begin() as conn:
        conn.execute(
            update(hub_audit).where(hub_audit.c.seq == 2).values(target="user:someone-else")
        )
    _rechain(
        str(app.state.engine.url.database),
        "audit",
        ("seq", "at", "actor", "action", "target", "detail"),
        start=2,
    )
    with app.state.engine.connect() as conn:
        assert hub_chain.verify(conn) is None  # recomputed: the hub's chain holds on its own
    assert [p[:24] for p in anchor.verify(site, client)] == ["hub audit rewritten: ent"]


def test_a_head_with_a_bad_key_or_signature_is_refused_and_registers_nothing(world):
    site, _, admin, _ = world
    hub_url = str(admin.http.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    bare = HubClient(hub_url, HubClient.enrol(hub_url, admin.create_site("st-b")))
    head = {"seq": 0, "hash": GENESIS, "signature": "AAAA", "public_key": "not a key"}
    refused = bare.http.post("/agent/anchor", json=head)
    assert refused.status_code == 422
    assert "public_key: not a PEM public key" in refused.json()["detail"]
    other = SiteConfig(name="st-b", store="-", ledger=str(Path(site.ledger).parent / "b" / "l"))
    head["public_key"] = anchor.public_key(other)
    refused = bare.http.post("/agent/anchor", json=head)
    assert refused.status_code == 422
    assert "does not verify with this site's key" in refused.json()["detail"]
    assert anchor.anchor(other, bare, None)["recorded"] is True  # no key was kept meanwhile
    bare.close()
