"""A form post over the body limit gets the web app's error page in words (HTML, 413); the
API still answers JSON."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flip.hub.app import create_app
from flip.hub.policy import AccessPolicy
from tests.hub.web_client import CSRF

LIMIT = 4096


@pytest.fixture
def http(tmp_path):
    policy = AccessPolicy(password_profile="test-cheapest")
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", policy=policy, max_body=LIMIT)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client
    app.state.engine.dispose()


def _form(http) -> dict[str, str]:
    token = CSRF.search(http.get("/request-account").text)[1]
    big = "x" * (2 * LIMIT)
    return {
        "csrf": token,
        "name": "n",
        "email": "n@example.org",
        "organisation": "o",
        "reason": big,
    }


def _is_error_page(answer) -> None:
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "over the limit" in answer.text and "<h1" in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_an_oversized_form_post_gets_an_html_error_page(http):
    _is_error_page(http.post("/request-account", data=_form(http)))


def test_an_oversized_form_streamed_without_a_length_gets_an_html_error_page(http):
    body = "&".join(f"{k}={v}" for k, v in _form(http).items()).encode()

    def chunks():
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    headers = {"content-type": "application/x-www-form-urlencoded"}
    _is_error_page(http.post("/request-account", content=chunks(), headers=headers))


def test_the_api_still_answers_json(http):
    answer = http.post("/api/v1/login", json={"name": "n", "password": "x" * (2 * LIMIT)})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    assert "over the limit" in answer.json()["detail"]
