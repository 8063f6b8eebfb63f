"""Tokens expire, rotate and are revoked; a disabled site and a rotated credential stop working."""

import time
from datetime import timedelta

from argon2 import extract_parameters, profiles
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from flip.hub.app import bootstrap_admin, create_app
from flip.hub.db import api_tokens, now, sessions, users
from flip.hub.routes.sessions import WRONG_LOGIN


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
    with hub.app.state.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.user_id == uid)
            .values(expires_at=now() + timedelta(seconds=1))
        )
    assert hub.call("POST", "/projects", fresh, json={"name": "p"}).status_code == 201
    time.sleep(1.1)
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


PASSWORD = "correct horse battery"


def test_a_hub_hashes_passwords_with_rfc_9106_parameters_unless_told_otherwise(tmp_path):
    # The `hub` fixture hashes with the cheapest parameters (CI time); a real hub does not.
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    admin = bootstrap_admin(app.state.engine)
    with TestClient(app) as http:
        created = http.post(
            "/api/v1/users",
            headers={"Authorization": f"Bearer {admin}"},
            json={"name": "rita", "role": "researcher", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text
        login = http.post("/api/v1/login", json={"name": "rita", "password": PASSWORD})
        assert login.status_code == 200, login.text
    with app.state.engine.connect() as conn:
        stored = conn.execute(
            select(users.c.password_hash).where(users.c.name == "rita")
        ).scalar_one()
    app.state.engine.dispose()
    assert extract_parameters(stored) == profiles.RFC_9106_LOW_MEMORY


def _login(hub, name: str, password: str):
    return hub.call("POST", "/login", json={"name": name, "password": password})


def test_password_login_opens_a_session_that_logout_and_password_changes_end(hub):
    created = hub.call(
        "POST",
        "/users",
        hub.admin,
        json={"name": "rita", "role": "researcher", "password": PASSWORD},
    ).json()
    uid = created["id"]
    with hub.app.state.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.id == uid)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    wrong = _login(hub, "rita", "not the password")
    nobody = _login(hub, "nobody", PASSWORD)
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"detail": WRONG_LOGIN}

    session = _login(hub, "rita", PASSWORD).json()["token"]
    assert hub.call("POST", "/projects", session, json={"name": "p"}).status_code == 201
    assert hub.call("POST", "/logout", session).status_code == 204
    assert hub.call("POST", "/projects", session, json={"name": "p"}).status_code == 401
    api_token = created["token"]
    assert hub.call("POST", "/logout", api_token).status_code == 400, "API tokens are revoked"

    session = _login(hub, "rita", PASSWORD).json()["token"]
    change = {"password": "an even longer password", "current_password": "guess guess guess"}
    assert hub.call("PUT", f"/users/{uid}/password", session, json=change).status_code == 403
    change["current_password"] = PASSWORD
    assert hub.call("PUT", f"/users/{uid}/password", session, json=change).status_code == 204
    assert hub.call("POST", "/projects", session, json={"name": "p"}).status_code == 401, (
        "a new password ends every session"
    )
    assert _login(hub, "rita", PASSWORD).status_code == 401
    assert _login(hub, "rita", "an even longer password").status_code == 200


def test_sessions_expire_and_short_passwords_are_refused(hub):
    hub.call(
        "POST", "/users", hub.admin, json={"name": "vic", "role": "viewer", "password": PASSWORD}
    )
    short = hub.call(
        "POST", "/users", hub.admin, json={"name": "sam", "role": "viewer", "password": "short"}
    )
    assert short.status_code == 422
    session = _login(hub, "vic", PASSWORD).json()["token"]
    with hub.app.state.engine.begin() as conn:
        conn.execute(update(sessions).values(expires_at=now() - timedelta(seconds=1)))
    response = hub.call("GET", "/projects/1", session)
    assert response.status_code == 401 and "session expired" in response.json()["detail"]
    user_without_password = hub.call(
        "POST", "/users", hub.admin, json={"name": "nopw", "role": "viewer"}
    ).json()
    assert user_without_password["token"]
    assert _login(hub, "nopw", "").status_code == 401


def test_a_token_made_with_an_api_token_ends_no_later_than_it(hub):
    """A leaked short-lived token cannot mint itself a successor that outlives it (revoking
    the leaked one by name would leave the successor working)."""
    created = hub.call("POST", "/users", hub.admin, json={"name": "lea", "role": "researcher"})
    uid, token = created.json()["id"], created.json()["token"]
    short = hub.call(
        "POST", f"/users/{uid}/tokens", token, json={"name": "ci", "expires_in_days": 1}
    ).json()
    child = hub.call("POST", f"/users/{uid}/tokens", short["token"], json={"name": "mine"})
    assert child.status_code == 201, child.text
    assert child.json()["expires_at"] <= short["expires_at"]
    rotated = hub.call("POST", f"/users/{uid}/token", short["token"]).json()["token"]
    with hub.app.state.engine.connect() as conn:
        ends = conn.execute(select(api_tokens.c.expires_at).where(api_tokens.c.user_id == uid))
        assert max(ends.scalars()) <= now() + timedelta(days=1), rotated[:6]
