"""Site enrolment tokens expire: 7 days unless the admin asks otherwise, and an expired
token cannot enrol (401 naming the expiry); the admin issues a new one for a pending site."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from flip.hub.client import HubError
from flip.hub.db import sites
from flip.hub.server import BackgroundServer
from flip.site.hub_client import HubClient


def _created(hub, name: str, **body) -> dict:
    response = hub.call("POST", "/sites", hub.admin, json={"name": name} | body)
    assert response.status_code == 201, response.text
    return response.json()


def _age(hub, site_id: int, days: float) -> None:
    """Move the site's enrolment token `days` older (its end that much nearer)."""
    with hub.app.state.engine.begin() as conn:
        mine = sites.c.id == site_id
        ends = conn.execute(select(sites.c.enrolment_expires_at).where(mine)).scalar_one()
        conn.execute(
            update(sites).where(mine).values(enrolment_expires_at=ends - timedelta(days=days))
        )


def _enrol(hub, token: str):
    return hub.call("POST", "/sites/enrol", json={"enrolment_token": token})


def _ends_in(created: dict) -> timedelta:
    return datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)


def test_an_enrolment_token_ends_after_seven_days_unless_asked_otherwise(hub):
    default, short = _created(hub, "a"), _created(hub, "b", expires_in_days=1)
    assert timedelta(days=6, hours=23) < _ends_in(default) <= timedelta(days=7)
    assert timedelta(hours=23) < _ends_in(short) <= timedelta(days=1)
    too_long = hub.call("POST", "/sites", hub.admin, json={"name": "c", "expires_in_days": 91})
    assert too_long.status_code == 422


def test_an_expired_enrolment_token_cannot_enrol(hub):
    created = _created(hub, "a", expires_in_days=1)
    _age(hub, created["id"], 1.01)
    refused = _enrol(hub, created["enrolment_token"])
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"] and "site a" in refused.json()["detail"]
    activity = hub.call("GET", f"/sites/{created['id']}/activity", hub.admin).json()
    assert activity["status"] == "pending"


def test_a_token_still_in_its_time_enrols(hub):
    created = _created(hub, "a", expires_in_days=2)
    _age(hub, created["id"], 1.9)
    assert _enrol(hub, created["enrolment_token"]).status_code == 200


def test_a_new_token_for_a_pending_site_replaces_its_old_one(hub):
    created = _created(hub, "a", expires_in_days=1)
    _age(hub, created["id"], 2)
    renewed = hub.call("POST", f"/sites/{created['id']}/enrolment", hub.admin, json={})
    assert renewed.status_code == 200, renewed.text
    assert timedelta(days=6) < _ends_in(renewed.json())
    assert _enrol(hub, created["enrolment_token"]).status_code == 401
    assert _enrol(hub, renewed.json()["enrolment_token"]).status_code == 200
    again = hub.call("POST", f"/sites/{created['id']}/enrolment", hub.admin, json={})
    assert again.status_code == 409, "an enrolled site gets no new enrolment token"


def test_only_an_admin_renews_an_enrolment_token(hub):
    created = _created(hub, "a")
    researcher = hub.user("rita", "researcher")
    path = f"/sites/{created['id']}/enrolment"
    assert hub.call("POST", path, researcher, json={}).status_code == 403


def test_the_site_agent_is_told_its_token_expired(hub):
    created = _created(hub, "a", expires_in_days=1)
    _age(hub, created["id"], 2)
    server = BackgroundServer(hub.app).start()
    try:
        with pytest.raises(HubError, match=r"expired.*ask the hub admin for a new one"):
            HubClient.enrol(server.url, created["enrolment_token"])
    finally:
        server.stop()
