"""Issue 19, item 10: password guessing is throttled per account and per client address,
and argon2 runs off the shared request path, so a flood of bad logins slows no one else."""

import asyncio
import statistics
import subprocess
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from flip.hub.app import bootstrap_admin, create_app
from flip.hub.policy import AccessPolicy
from flip.ports import free_port
from flip.webkit.throttle import LoginThrottle
from tests.conftest import POSTGRES_URL, fresh_database
from tests.e2e.processes import FLIP, wait_for

PASSWORD = "correct horse battery"


def _hub(tmp_path, **policy) -> tuple[TestClient, dict[str, str]]:
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", policy=AccessPolicy(**policy))
    admin = {"Authorization": f"Bearer {bootstrap_admin(app.state.engine)}"}
    http = TestClient(app, raise_server_exceptions=False)
    for name in ("rita", "otto"):
        body = {"name": name, "role": "researcher", "password": PASSWORD}
        assert http.post("/api/v1/users", headers=admin, json=body).status_code == 201
    return http, admin


def _login(http, name: str, password: str):
    return http.post("/api/v1/login", json={"name": name, "password": password})


def test_wrong_guesses_on_one_account_get_429_with_retry_after(tmp_path):
    http, _ = _hub(tmp_path, account_failures=3, address_failures=100, failure_window=60)
    for _ in range(3):
        assert _login(http, "rita", "a wrong password").status_code == 401
    throttled = _login(http, "rita", "a wrong password")
    assert throttled.status_code == 429
    assert 50 <= int(throttled.headers["Retry-After"]) <= 60
    assert _login(http, "rita", PASSWORD).status_code == 429, "the right one waits too"
    assert _login(http, "otto", PASSWORD).status_code == 200, "other accounts are untouched"


def test_guesses_from_one_address_over_many_accounts_get_429(tmp_path):
    http, _ = _hub(tmp_path, account_failures=100, address_failures=4, failure_window=60)
    for n in range(4):
        assert _login(http, f"user{n}", "a wrong password").status_code == 401
    assert _login(http, "otto", PASSWORD).status_code == 429


def test_a_success_clears_the_account_and_the_window_passes():
    clock = [0.0]
    throttle = LoginThrottle(2, 10, window=60, clock=lambda: clock[0])
    throttle.attempt("rita", "1.2.3.4")
    stamp = throttle.attempt("rita", "1.2.3.4")
    throttle.succeeded("rita", "1.2.3.4", stamp)
    throttle.attempt("rita", "1.2.3.4")
    throttle.attempt("rita", "1.2.3.4")
    with pytest.raises(Exception, match="too many"):
        throttle.attempt("rita", "1.2.3.4")
    clock[0] = 60.5
    throttle.attempt("rita", "1.2.3.4")


def test_guessing_from_another_address_does_not_lock_the_owner_out_of_theirs(tmp_path):
    http, _ = _hub(tmp_path, account_failures=3, address_failures=100, failure_window=60)
    owner = TestClient(http.app, client=("10.0.0.1", 50000))
    attacker = TestClient(http.app, client=("10.0.0.66", 50000))
    assert _login(owner, "rita", PASSWORD).status_code == 200
    codes = [_login(attacker, "rita", "a wrong password").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert _login(attacker, "rita", PASSWORD).status_code == 429
    assert _login(owner, "rita", PASSWORD).status_code == 200
    wrong = [_login(owner, "rita", "a wrong password").status_code for _ in range(4)]
    assert wrong == [401, 401, 401, 429], "the owner's address has its own count"


def test_session_password_checks_are_throttled_too(tmp_path):
    http, _ = _hub(tmp_path, account_failures=2, address_failures=100, failure_window=60)
    session = _login(http, "rita", PASSWORD).json()
    headers = {"Authorization": f"Bearer {session['token']}"}
    path = f"/api/v1/users/{session['id']}/token"
    for _ in range(2):
        assert http.post(path, headers=headers, json={"password": "guess guess"}).status_code == 403
    assert http.post(path, headers=headers, json={"password": PASSWORD}).status_code == 429


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh hub database: a SQLite file, or a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    with fresh_database(POSTGRES_URL, "flip_throttle") as url:
        yield url


#: Three wrong passwords per account within a minute; argon2 at its cheapest (tests only).
STRICT = AccessPolicy(
    account_failures=3, address_failures=100, failure_window=60, password_profile="test-cheapest"
)


def _with_rita(url: str):
    app = create_app(url, policy=STRICT)
    admin = {"Authorization": f"Bearer {bootstrap_admin(app.state.engine)}"}
    with TestClient(app) as http:
        body = {"name": "rita", "role": "researcher", "password": PASSWORD}
        assert http.post("/api/v1/users", headers=admin, json=body).status_code == 201
    return app


def test_the_counts_outlive_a_hub_restart(db_url):
    first = _with_rita(db_url)
    with TestClient(first) as http:
        assert [_login(http, "rita", "a wrong password").status_code for _ in range(3)] == [401] * 3
    first.state.engine.dispose()
    restarted = create_app(db_url, policy=STRICT)
    with TestClient(restarted) as http:
        assert _login(http, "rita", PASSWORD).status_code == 429, "a restart forgot the guesses"
    restarted.state.engine.dispose()


def test_hub_processes_on_one_database_count_together(db_url):
    one = _with_rita(db_url)
    other = create_app(db_url, policy=STRICT)
    with TestClient(one) as first, TestClient(other) as second:
        codes = [_login(h, "rita", "a wrong password").status_code for h in (first, second, first)]
        assert codes == [401] * 3
        assert _login(second, "rita", PASSWORD).status_code == 429
        assert _login(first, "rita", PASSWORD).status_code == 429
    for app in (one, other):
        app.state.engine.dispose()


def test_a_success_in_one_process_clears_the_account_for_the_others(db_url):
    one = _with_rita(db_url)
    other = create_app(db_url, policy=STRICT)
    with TestClient(one) as first, TestClient(other) as second:
        assert _login(second, "rita", "a wrong password").status_code == 401
        assert _login(first, "rita", "a wrong password").status_code == 401
        assert _login(first, "rita", PASSWORD).status_code == 200
        codes = [_login(second, "rita", "a wrong password").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429], "the success cleared rita's count everywhere"
    for app in (one, other):
        app.state.engine.dispose()


def test_guesses_sent_at_once_cannot_slip_past_the_stored_counts(db_url):
    app = _with_rita(db_url)

    async def guess_all() -> list[int]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
            body = {"name": "rita", "password": "a wrong password"}
            answers = await asyncio.gather(
                *(http.post("/api/v1/login", json=body) for _ in range(12))
            )
        return sorted(a.status_code for a in answers)

    with TestClient(app):  # the app's lifespan (its writer) runs
        codes = asyncio.run(guess_all())
    assert codes == [401] * 3 + [429] * 9
    app.state.engine.dispose()


class _Served:
    """`flip hub serve` as its own process on a fresh SQLite database."""

    def __init__(self, folder, *options: str) -> None:
        self.port = free_port()
        command = [*FLIP, "hub", "serve", "--db", f"sqlite:///{folder / 'hub.sqlite'}"]
        command += ["--port", str(self.port), "--log-level", "warning", *options]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.admin = None
        for line in self.process.stderr:
            if "admin token" in line:
                self.admin = line.strip().rsplit(" ", 1)[-1]
            if "hub API on" in line:
                break
        self.api = f"http://127.0.0.1:{self.port}/api/v1"
        wait_for(self._up, "the hub")

    def _up(self) -> bool:
        try:
            return httpx.get(self.api.removesuffix("/api/v1") + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.mark.slow
def test_a_served_hub_throttles_guessing(tmp_path):
    hub = _Served(tmp_path, "--login-attempts", "3")
    try:
        admin = {"Authorization": f"Bearer {hub.admin}"}
        body = {"name": "rita", "role": "researcher", "password": PASSWORD}
        assert httpx.post(f"{hub.api}/users", headers=admin, json=body).status_code == 201
        guess = {"name": "rita", "password": "a wrong password"}
        codes = [httpx.post(f"{hub.api}/login", json=guess).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
    finally:
        hub.stop()


def _p50_write(api: str, headers: dict[str, str], n: int = 40) -> float:
    took = []
    with httpx.Client(headers=headers, timeout=30) as http:
        for i in range(n):
            start = time.perf_counter()
            assert http.post(f"{api}/projects", json={"name": f"p{i}"}).status_code == 201
            took.append(time.perf_counter() - start)
    return statistics.median(took)


@pytest.mark.slow
def test_a_flood_of_wrong_passwords_does_not_slow_other_requests(tmp_path):
    # Throttling off (huge limits): every guess costs a full argon2 check.
    hub = _Served(tmp_path, "--login-attempts", "1000000")
    stop = threading.Event()
    answered: list[int] = []

    def guess() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                body = {"name": "rita", "password": "a wrong password"}
                answered.append(http.post(f"{hub.api}/login", json=body).status_code)

    try:
        admin = {"Authorization": f"Bearer {hub.admin}"}
        body = {"name": "rita", "role": "researcher", "password": PASSWORD}
        created = httpx.post(f"{hub.api}/users", headers=admin, json=body).json()
        headers = {"Authorization": f"Bearer {created['token']}"}
        baseline = _p50_write(hub.api, headers)
        flooders = [threading.Thread(target=guess) for _ in range(8)]
        for thread in flooders:
            thread.start()
        wait_for(lambda: len(answered) >= 8, "the flood to start")
        during = _p50_write(hub.api, headers)
        stop.set()
        for thread in flooders:
            thread.join(timeout=30)
    finally:
        stop.set()
        hub.stop()
    print(f"p50 of a write: {baseline * 1000:.1f} ms alone, {during * 1000:.1f} ms in the flood")
    assert set(answered) <= {401, 429}
    assert during < max(5 * baseline, baseline + 0.05), (baseline, during, len(answered))
