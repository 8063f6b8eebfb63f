"""Issue 19, item 2: revoking a user ends every credential until an admin restores access;
token lifetimes are capped, and a session mints a token only with the password again."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from flip.cli.app import app as cli
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.db import api_tokens, now
from flip.hub.policy import AccessPolicy

PASSWORD = "correct horse battery"


def _user_with_password(hub, name: str) -> tuple[int, str]:
    body = {"name": name, "role": "researcher", "password": PASSWORD}
    created = hub.call("POST", "/users", hub.admin, json=body).json()
    return created["id"], created["token"]


def _login(hub, name: str, password: str = PASSWORD):
    return hub.call("POST", "/login", json={"name": name, "password": password})


def test_revoking_a_user_ends_tokens_sessions_and_password_login(hub):
    uid, token = _user_with_password(hub, "rita")
    session = _login(hub, "rita").json()["token"]
    assert hub.call("POST", "/projects", session, json={"name": "p"}).status_code == 201

    assert hub.call("DELETE", f"/users/{uid}/token", hub.admin).status_code == 204
    assert hub.call("POST", "/projects", token, json={"name": "p"}).status_code == 401
    assert hub.call("POST", "/projects", session, json={"name": "p"}).status_code == 401
    again = _login(hub, "rita")
    assert again.status_code == 403 and "revoked" in again.json()["detail"]
    rotated = hub.call("POST", f"/users/{uid}/token", hub.admin)
    assert rotated.status_code == 409, "a new token does not quietly restore access"

    restored = hub.call("POST", f"/users/{uid}/restore", hub.admin)
    assert restored.status_code == 200, restored.text
    fresh = restored.json()["token"]
    assert hub.call("POST", "/projects", fresh, json={"name": "p"}).status_code == 201
    assert _login(hub, "rita").status_code == 200
    assert hub.call("POST", "/projects", token, json={"name": "p"}).status_code == 401, (
        "the revoked token stays dead"
    )


def test_a_session_mints_a_token_only_with_the_password(hub):
    uid, _ = _user_with_password(hub, "rita")
    session = _login(hub, "rita").json()["token"]
    path = f"/users/{uid}/token"
    bare = hub.call("POST", path, session)
    assert bare.status_code == 403 and "password" in bare.json()["detail"]
    wrong = hub.call("POST", path, session, json={"password": "not the password!"})
    assert wrong.status_code == 403
    decade = hub.call("POST", path, session, json={"password": PASSWORD, "expires_in_days": 3650})
    assert decade.status_code == 422 and "90" in decade.json()["detail"]
    minted = hub.call("POST", path, session, json={"password": PASSWORD})
    assert minted.status_code == 200, minted.text
    promoted = {"name": "ada", "role": "admin", "password": PASSWORD}
    hub.call("POST", "/users", hub.admin, json=promoted)
    admin_session = _login(hub, "ada").json()["token"]
    restore = f"/users/{uid}/restore"
    assert hub.call("POST", restore, admin_session).status_code == 403, "nor does restoring"
    assert hub.call("POST", restore, admin_session, json={"password": PASSWORD}).is_success
    with hub.app.state.engine.connect() as conn:
        longest = select(func.max(api_tokens.c.expires_at)).where(api_tokens.c.user_id == uid)
        expires = conn.execute(longest).scalar()
    assert expires <= now() + timedelta(days=90)


def test_an_admin_session_makes_no_lasting_credential_without_the_password(hub):
    """A stolen admin session could create an admin with a 90-day token, or set another
    admin's password and log in as them: from a session, both need the caller's password."""
    promoted = {"name": "ada", "role": "admin", "password": PASSWORD}
    assert hub.call("POST", "/users", hub.admin, json=promoted).status_code == 201
    session = _login(hub, "ada").json()["token"]
    backdoor = {"name": "backdoor", "role": "admin"}
    bare = hub.call("POST", "/users", session, json=backdoor)
    assert bare.status_code == 403 and "password" in bare.json()["detail"], bare.text
    wrong = hub.call("POST", "/users", session, json=backdoor | {"current_password": "wrong" * 3})
    assert wrong.status_code == 403
    made = hub.call("POST", "/users", session, json=backdoor | {"current_password": PASSWORD})
    assert made.status_code == 201, made.text

    uid, _ = _user_with_password(hub, "rita")
    reset = {"password": "a password I chose"}
    bare = hub.call("PUT", f"/users/{uid}/password", session, json=reset)
    assert bare.status_code == 403 and "password" in bare.json()["detail"], bare.text
    assert _login(hub, "rita", "a password I chose").status_code == 401
    confirmed = reset | {"current_password": PASSWORD}
    assert hub.call("PUT", f"/users/{uid}/password", session, json=confirmed).status_code == 204
    assert _login(hub, "rita", "a password I chose").status_code == 200
    by_token = hub.call("PUT", f"/users/{uid}/password", hub.admin, json={"password": PASSWORD})
    assert by_token.status_code == 204, "an API token (minted with the password) needs none"


def test_token_lifetime_is_capped_by_the_hubs_policy(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", policy=AccessPolicy(max_token_days=7))
    admin = {"Authorization": f"Bearer {bootstrap_admin(app.state.engine)}"}
    with TestClient(app) as http:
        long = {"name": "rita", "role": "researcher", "expires_in_days": 90}
        refused = http.post("/api/v1/users", headers=admin, json=long)
        assert refused.status_code == 422 and "7 days" in refused.json()["detail"]
        created = http.post("/api/v1/users", headers=admin, json={"name": "rita", "role": "viewer"})
        assert created.status_code == 201
        uid = created.json()["id"]
        assert http.post(f"/api/v1/users/{uid}/token", headers=admin, json=long).status_code == 422
    with app.state.engine.connect() as conn:
        longest = select(func.max(api_tokens.c.expires_at)).where(api_tokens.c.user_id == uid)
        expires = conn.execute(longest).scalar()
    assert now() + timedelta(days=6) < expires <= now() + timedelta(days=7)
    app.state.engine.dispose()


def test_the_first_admins_token_expires_within_the_cap(tmp_path):
    """The token `flip hub serve` prints for the first admin had no expiry at all."""
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    bootstrap_admin(app.state.engine, days=7)
    with app.state.engine.connect() as conn:
        expires = conn.execute(select(api_tokens.c.expires_at)).scalar()
    assert expires is not None and now() + timedelta(days=6) < expires <= now() + timedelta(days=7)
    app.state.engine.dispose()
    app = create_app(f"sqlite:///{tmp_path / 'other.sqlite'}")
    bootstrap_admin(app.state.engine)
    with app.state.engine.connect() as conn:
        expires = conn.execute(select(api_tokens.c.expires_at)).scalar()
    assert expires is not None and expires <= now() + timedelta(days=90)
    app.state.engine.dispose()


def test_an_admin_locked_out_is_restored_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    app = create_app(url)
    admin = bootstrap_admin(app.state.engine)
    app.state.engine.dispose()
    runner = CliRunner()
    revoked = runner.invoke(cli, ["hub", "users", "revoke", "admin", "--db", url])
    assert revoked.exit_code == 0, revoked.output
    app = create_app(url)
    with TestClient(app) as http:
        headers = {"Authorization": f"Bearer {admin}"}
        assert http.get("/api/v1/audit/verify", headers=headers).status_code == 401
        restored = runner.invoke(cli, ["hub", "users", "restore", "admin", "--db", url])
        assert restored.exit_code == 0, restored.output
        token = restored.output.strip().rsplit(" ", 1)[-1]
        ok = http.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["ok"]
    missing = runner.invoke(cli, ["hub", "users", "restore", "nobody", "--db", url])
    assert missing.exit_code == 1 and "no user nobody" in missing.output
    app.state.engine.dispose()


def test_a_token_cap_beyond_the_policys_is_a_usage_error(tmp_path):
    """`--max-token-days 5000` ended `flip hub serve` in a pydantic traceback."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    served = CliRunner().invoke(cli, ["hub", "serve", "--db", url, "--max-token-days", "5000"])
    assert served.exit_code == 2, served.output
    assert "max-token-days" in served.output and "3650" in served.output


def test_a_restored_token_beyond_the_longest_cap_is_a_usage_error(tmp_path):
    """`flip hub users restore NAME --days 10000000` ended in an OverflowError traceback."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    app = create_app(url)
    bootstrap_admin(app.state.engine)
    app.state.engine.dispose()
    args = ["hub", "users", "restore", "admin", "--db", url, "--days", "10000000"]
    restored = CliRunner().invoke(cli, args)
    assert restored.exit_code == 2, restored.output
    assert "--days" in restored.output and "3650" in restored.output
