import pytest
from fastapi.testclient import TestClient

from flip.hub.app import bootstrap_admin, create_app
from flip.hub.policy import AccessPolicy
from tests.conftest import POSTGRES_URL, fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hub_db_url(request, tmp_path):
    """A fresh hub database: a SQLite file, or a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    with fresh_database(POSTGRES_URL, "flip_hub") as url:
        yield url


#: Test hubs hash passwords with argon2's cheapest parameters: the role matrix alone makes
#: ~400 accounts with a password. tests/hub/test_tokens.py checks the default parameters.
TEST_POLICY = AccessPolicy(password_profile="test-cheapest")


class Hub:
    """A hub app with an admin, a researcher and enrolled sites, driven through HTTP."""

    def __init__(self, url: str, policy: AccessPolicy = TEST_POLICY) -> None:
        self.app = create_app(url, policy=policy)
        self.http = TestClient(self.app, raise_server_exceptions=False)
        self.admin = bootstrap_admin(self.app.state.engine)

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {}) | (
            {"Authorization": f"Bearer {token}"} if token else {}
        )
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def user(self, name: str, role: str) -> str:
        response = self.call("POST", "/users", self.admin, json={"name": name, "role": role})
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def site(self, name: str) -> str:
        enrolment = self.call("POST", "/sites", self.admin, json={"name": name}).json()[
            "enrolment_token"
        ]
        return self.call("POST", "/sites/enrol", json={"enrolment_token": enrolment}).json()[
            "token"
        ]


@pytest.fixture
def hub(hub_db_url):
    h = Hub(hub_db_url)
    # Entered once: one event loop serves every request (an unentered TestClient starts
    # one per request) and the app's lifespan runs.
    with h.http:
        yield h
    h.app.state.engine.dispose()


#: The password the web tests' users sign in with.
WEB_PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """One hub app on SQLite for the module, with an admin who can sign in on the web."""
    hub = Hub(f"sqlite:///{tmp_path_factory.mktemp('web') / 'hub.sqlite'}")
    hub.call("PUT", "/users/1/password", hub.admin, json={"password": WEB_PASSWORD})
    yield hub
    hub.http.close()
    hub.app.state.engine.dispose()


@pytest.fixture(scope="module")
def admin(web):
    """The admin, signed in on the web (TOTP enrolled) in one browser for the module."""
    from tests.hub.web_client import Browser

    browser = Browser(web.app)
    browser.sign_in("admin", WEB_PASSWORD)
    return browser
