"""Tokens expire, rotate and are revoked; a disabled site and a rotated credential stop working."""

from datetime import timedelta

from sqlalchemy import update

from flip.hub.db import now, users


def test_user_tokens_expire_rotate_and_are_revoked(hub):
    created = hub.call(
        "POST", "/users", hub.admin, json={"name": "rita", "role": "researcher"}
    ).json()
    token, uid = created["token"], created["id"]
    assert hub.call("POST", "/projects", token, json={"name": "p"}).status_code == 201
    assert hub.call("POST", f"/users/{uid + 100}/token", token).status_code == 403, (
        "not someone else's"
    )
    new = hub.call("POST", f"/users/{uid}/token", token)
    assert hub.call("POST", "/projects", token, json={"name": "p"}).status_code == 401, (
        "the old token is dead"
    )
    fresh = new.json()["token"]
    assert hub.call("POST", "/projects", fresh, json={"name": "p"}).status_code == 201
    with hub.app.state.engine.begin() as conn:
        conn.execute(
            update(users)
            .where(users.c.id == uid)
            .values(token_expires_at=now() - timedelta(seconds=1))
        )
    expired = hub.call("POST", "/projects", fresh, json={"name": "p"})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    renewed = hub.call("POST", f"/users/{uid}/token", hub.admin).json()["token"]
    assert hub.call("POST", "/projects", renewed, json={"name": "p"}).status_code == 201
    assert hub.call("DELETE", f"/users/{uid}/token", hub.admin).status_code == 204
    assert hub.call("POST", "/projects", renewed, json={"name": "p"}).status_code == 401


def test_site_credentials_rotate_and_disabled_sites_are_shut_out(hub):
    credential = hub.site("a")
    assert hub.call("GET", "/agent/work", credential).status_code == 200
    rotated = hub.call("POST", "/agent/credential", credential)
    assert rotated.status_code == 200
    assert hub.call("GET", "/agent/work", credential).status_code == 401
    new = rotated.json()["token"]
    assert hub.call("GET", "/agent/work", new).status_code == 200
    assert hub.call("POST", f"/sites/{rotated.json()['id']}/disable", hub.admin).status_code == 204
    assert hub.call("GET", "/agent/work", new).status_code == 401
    assert hub.call("POST", "/sites/999/disable", hub.admin).status_code == 404
