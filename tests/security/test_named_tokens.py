"""Named API tokens (issue 21) under issue 19's rules: each of a user's tokens works and
ends on its own, no one else's token reaches them, and an admin's revocation ends them all."""

from datetime import datetime, timedelta

from sqlalchemy import select, update

from flip.hub.db import api_tokens, audit, now
from tests.hub.conftest import TEST_POLICY, Hub
from tests.security.test_revocation import PASSWORD, _login, _user_with_password


def _mint(hub, uid: int, token: str, name: str, **body):
    return hub.call("POST", f"/users/{uid}/tokens", token, json={"name": name} | body)


def _works(hub, token: str) -> int:
    return hub.call("POST", "/projects", token, json={"name": "p"}).status_code


def test_two_named_tokens_both_work_and_revoking_one_leaves_the_other(hub):
    uid, first = _user_with_password(hub, "rita")
    laptop, ci = _mint(hub, uid, first, "laptop"), _mint(hub, uid, first, "ci")
    assert laptop.status_code == ci.status_code == 201, laptop.text
    assert _works(hub, laptop.json()["token"]) == _works(hub, ci.json()["token"]) == 201
    assert _works(hub, first) == 201, "a new token does not replace the others"

    listed = hub.call("GET", f"/users/{uid}/tokens", first)
    assert listed.status_code == 200, listed.text
    assert {t["name"] for t in listed.json()} >= {"laptop", "ci"}
    assert laptop.json()["token"] not in listed.text and "hash" not in listed.text
    prefixes = {t["name"]: t["prefix"] for t in listed.json()}
    assert laptop.json()["token"].startswith(prefixes["laptop"])

    gone = hub.call("DELETE", f"/users/{uid}/tokens/{laptop.json()['id']}", ci.json()["token"])
    assert gone.status_code == 204, gone.text
    assert _works(hub, laptop.json()["token"]) == 401
    assert _works(hub, ci.json()["token"]) == 201 and _works(hub, first) == 201
    again = hub.call("DELETE", f"/users/{uid}/tokens/{laptop.json()['id']}", first)
    assert again.status_code == 404
    assert _login(hub, "rita").status_code == 200, "the password sign-in goes on"


def test_an_admin_revoking_a_user_ends_every_token_until_restored(hub):
    uid, first = _user_with_password(hub, "rita")
    laptop = _mint(hub, uid, first, "laptop").json()["token"]
    ci = _mint(hub, uid, first, "ci").json()["token"]
    session = _login(hub, "rita").json()["token"]
    assert hub.call("DELETE", f"/users/{uid}/token", hub.admin).status_code == 204
    for token in (first, laptop, ci, session):
        assert _works(hub, token) == 401
    assert _mint(hub, uid, hub.admin, "again").status_code == 403, "no token quietly restores"
    assert _login(hub, "rita").status_code == 403
    fresh = hub.call("POST", f"/users/{uid}/restore", hub.admin).json()["token"]
    assert _works(hub, fresh) == 201
    for token in (first, laptop, ci):
        assert _works(hub, token) == 401, "restoring brings back no old token"
    assert [t["name"] for t in hub.call("GET", f"/users/{uid}/tokens", fresh).json()] == [
        "restored"
    ]


def test_a_users_token_cannot_list_or_revoke_another_users_tokens(hub):
    a_id, a_token = _user_with_password(hub, "ann")
    b_id, b_token = _user_with_password(hub, "bob")
    b_ci = _mint(hub, b_id, b_token, "ci").json()
    assert hub.call("GET", f"/users/{b_id}/tokens", a_token).status_code == 403
    assert hub.call("DELETE", f"/users/{b_id}/tokens/{b_ci['id']}", a_token).status_code == 403
    assert _mint(hub, b_id, a_token, "mine now").status_code == 403
    hidden = hub.call("DELETE", f"/users/{a_id}/tokens/{b_ci['id']}", a_token)
    assert hidden.status_code == 404, "another user's token is not found under one's own"
    assert _works(hub, b_ci["token"]) == 201
    assert hub.call("DELETE", f"/users/{b_id}/tokens/{b_ci['id']}", hub.admin).status_code == 204
    assert _works(hub, b_ci["token"]) == 401


def test_a_named_token_from_a_session_needs_the_password_and_fits_the_cap(hub):
    uid, _ = _user_with_password(hub, "rita")
    session = _login(hub, "rita").json()["token"]
    bare = _mint(hub, uid, session, "laptop")
    assert bare.status_code == 403 and "password" in bare.json()["detail"]
    assert _mint(hub, uid, session, "laptop", password="not the password!").status_code == 403
    decade = _mint(hub, uid, session, "laptop", password=PASSWORD, expires_in_days=3650)
    assert decade.status_code == 422 and "90" in decade.json()["detail"]
    made = _mint(hub, uid, session, "laptop", password=PASSWORD, expires_in_days=7)
    assert made.status_code == 201, made.text
    assert _works(hub, made.json()["token"]) == 201
    twice = _mint(hub, uid, session, "laptop", password=PASSWORD)
    assert twice.status_code == 409, "a user's token names are unique"
    listed = hub.call("GET", f"/users/{uid}/tokens", session).json()
    assert [t["state"] for t in listed if t["name"] == "laptop"] == ["active"]


def _listed(hub, uid: int, token: str) -> dict[str, dict]:
    return {t["name"]: t for t in hub.call("GET", f"/users/{uid}/tokens", token).json()}


def test_a_token_shows_when_it_was_last_used_without_a_write_per_call(hub):
    uid, first = _user_with_password(hub, "rita")
    made = _mint(hub, uid, first, "laptop").json()
    assert _listed(hub, uid, first)["laptop"]["last_used_at"] is None
    before = now()
    assert _works(hub, made["token"]) == 201
    used = _listed(hub, uid, first)["laptop"]["last_used_at"]
    assert used is not None and datetime.fromisoformat(used).replace(tzinfo=None) >= before.replace(
        microsecond=0
    )
    assert _works(hub, made["token"]) == 201
    assert _listed(hub, uid, first)["laptop"]["last_used_at"] == used, "one write an hour at most"


def _expire(hub, uid: int, name: str, days_ago: float) -> None:
    with hub.app.state.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.user_id == uid, api_tokens.c.name == name)
            .values(expires_at=now() - timedelta(days=days_ago))
        )


def test_a_user_holds_at_most_the_hubs_number_of_live_tokens(tmp_path):
    policy = TEST_POLICY.model_copy(update={"max_tokens_per_user": 3})
    hub = Hub(f"sqlite:///{tmp_path / 'hub.sqlite'}", policy)
    with hub.http:
        uid, first = _user_with_password(hub, "rita")
        assert _mint(hub, uid, first, "laptop").status_code == 201
        ci = _mint(hub, uid, first, "ci").json()
        over = _mint(hub, uid, first, "one more")
        assert over.status_code == 409 and "3" in over.json()["detail"], over.text
        assert "revoke" in over.json()["detail"]
        hub.call("DELETE", f"/users/{uid}/tokens/{ci['id']}", first)
        assert _mint(hub, uid, first, "one more").status_code == 201
        _expire(hub, uid, "laptop", 1)
        assert _mint(hub, uid, first, "after expiry").status_code == 201, "expired ones count not"
    hub.app.state.engine.dispose()


def test_expired_tokens_free_their_names_and_are_purged_after_a_month(hub):
    uid, first = _user_with_password(hub, "rita")
    for name in ("laptop", "old", "recent"):
        assert _mint(hub, uid, first, name).status_code == 201
    _expire(hub, uid, "laptop", 1)
    _expire(hub, uid, "old", 31)
    _expire(hub, uid, "recent", 2)
    assert _listed(hub, uid, first)["recent"]["state"] == "expired"
    again = _mint(hub, uid, first, "laptop")
    assert again.status_code == 201, "an expired token's name is free again"
    names = _listed(hub, uid, first)
    assert "old" not in names, "expired over a month ago: purged"
    assert names["recent"]["state"] == "expired", "recently expired: still shown"
    assert names["laptop"]["state"] == "active" and names["laptop"]["id"] == again.json()["id"]


def test_an_admin_cannot_mint_a_token_for_another_user_and_act_as_them(hub):
    """A token minted by an admin for a researcher would act as the researcher, and the audit
    would blame them: only the user mints their own named tokens. The admin's restore is
    audited as the admin's."""
    uid, rita = _user_with_password(hub, "rita")
    minted = _mint(hub, uid, hub.admin, "laptop2", expires_in_days=30)
    assert minted.status_code == 403, minted.text
    assert "token" not in minted.json()
    names = [t["name"] for t in hub.call("GET", f"/users/{uid}/tokens", rita).json()]
    assert "laptop2" not in names
    assert hub.call("DELETE", f"/users/{uid}/token", hub.admin).status_code == 204
    assert hub.call("POST", f"/users/{uid}/restore", hub.admin).status_code == 200
    with hub.app.state.engine.connect() as conn:
        restored = conn.execute(
            select(audit.c.actor).where(audit.c.action == "user.restore")
        ).scalar_one()
    assert restored != "user:rita" and restored.startswith("user:")
