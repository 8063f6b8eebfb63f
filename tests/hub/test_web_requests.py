"""The public "request an account" form: a limit per client address, a cap on what waits,
and a name or email in use refused up front, in words that do not say which of them is."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flip.hub import access_requests
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.policy import AccessPolicy
from tests.hub.web_client import CSRF


@pytest.fixture
def hub(tmp_path):
    policy = AccessPolicy(password_profile="test-cheapest", account_requests=3)
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", policy=policy)
    admin = {"Authorization": f"Bearer {bootstrap_admin(app.state.engine)}"}
    with TestClient(app) as http:
        made = http.post("/api/v1/users", headers=admin, json={"name": "Rosa", "role": "viewer"})
        assert made.status_code == 201
        yield app
    app.state.engine.dispose()


def _ask(app, address: str, name: str, email: str | None = None):
    browser = TestClient(app, follow_redirects=False, client=(address, 50000))
    token = CSRF.search(browser.get("/request-account").text)[1]
    fields = {"name": name, "email": email or f"{name}@example.org", "organisation": "o"}
    return browser.post("/request-account", data={"csrf": token, **fields, "reason": "r"})


def test_one_address_may_send_only_so_many_requests_an_hour(hub):
    assert [_ask(hub, "10.0.0.5", f"n{i}").status_code for i in range(3)] == [202] * 3
    flooded = _ask(hub, "10.0.0.5", "n3")
    assert flooded.status_code == 429 and int(flooded.headers["Retry-After"]) > 3000
    assert "too many account requests" in flooded.text
    assert "text/html" in flooded.headers["content-type"]
    assert _ask(hub, "10.0.0.6", "n4").status_code == 202, "another address is not held up"


def test_the_queue_of_pending_requests_is_capped(hub, monkeypatch):
    monkeypatch.setattr(access_requests, "MAX_PENDING", 2)
    assert [_ask(hub, f"10.0.1.{i}", f"q{i}").status_code for i in range(3)] == [202, 202, 429]


@pytest.mark.parametrize(
    "name, email",
    [("rosa", None), ("ROSA", None), ("waiting", None), ("other", "WAITING@example.org")],
    ids=["a user", "a user in other case", "a request waiting", "its email"],
)
def test_a_name_or_email_in_use_is_refused_with_one_message(hub, name, email):
    assert _ask(hub, "10.0.2.1", "waiting").status_code == 202
    taken = _ask(hub, "10.0.2.2", name, email)
    assert taken.status_code == 409
    assert access_requests.TAKEN.split(":")[0] in taken.text.replace("&#39;", "'")
    assert f'value="{name}"' in taken.text, "the form keeps what was typed"
