"""The site console's sign-in throttle (the hub's, shared through flip.webkit): guesses sent
at once cannot slip past it, a throttled guess gets 429 with Retry-After, and guessing from
another address cannot lock the admin out of the address they sign in from. And a form over
the console's body limit gets its error page."""

from __future__ import annotations

import asyncio
import re
import subprocess

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from flip.config import SiteConfig
from flip.ports import free_port
from flip.site.console import create_app, signin
from flip.site.console.passwords import password_path, set_password
from tests.e2e.processes import FLIP, wait_for

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "a console test password"


def _console(tmp_path):
    config = tmp_path / "site.yaml"
    SiteConfig(name="north", store="store.duckdb", ledger="ledger.sqlite").save(config)
    set_password(password_path(tmp_path / "ledger.sqlite"), "dana", PASSWORD)
    return create_app(config)


def _browser(app, address: str) -> TestClient:
    return TestClient(
        app, raise_server_exceptions=False, follow_redirects=False, client=(address, 50000)
    )


def _sign_in(browser: TestClient, password: str, name: str = "dana"):
    token = CSRF.search(browser.get("/signin").text).group(1)
    return browser.post("/signin", data={"csrf": token, "name": name, "password": password})


def test_guesses_sent_at_once_are_counted_before_any_is_checked(tmp_path):
    app = _console(tmp_path)
    setup = _browser(app, "10.0.0.9")
    token = CSRF.search(setup.get("/signin").text).group(1)
    cookies = dict(setup.cookies)

    async def guess_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app, client=("10.0.0.9", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=cookies
        ) as http:
            form = {"csrf": token, "name": "dana", "password": "a wrong password!"}
            return await asyncio.gather(*(http.post("/signin", data=form) for _ in range(12)))

    answers = asyncio.run(guess_all())
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) == 5 and codes.count(429) == 7, codes
    throttled = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    assert "too many wrong passwords" in throttled.text


def test_guessing_from_elsewhere_does_not_lock_the_admin_out_of_their_address(tmp_path):
    app = _console(tmp_path)
    dana, attacker, newcomer = (_browser(app, a) for a in ("10.0.0.1", "10.0.0.66", "10.0.0.7"))
    assert _sign_in(dana, PASSWORD).status_code == 303
    codes = [_sign_in(attacker, "a wrong password!").status_code for _ in range(8)]
    assert codes == [401] * 5 + [429] * 3
    assert _sign_in(newcomer, PASSWORD).status_code == 429, "other addresses wait"
    assert _sign_in(dana, PASSWORD).status_code == 303, "dana's own address is not locked"
    assert [_sign_in(dana, "not it at all!").status_code for _ in range(6)] == [401] * 5 + [429]


def test_an_oversized_form_post_gets_the_error_page(tmp_path):
    browser = _browser(_console(tmp_path), "10.0.0.3")
    token = CSRF.search(browser.get("/signin").text).group(1)
    form = {"csrf": token, "name": "dana", "password": "x" * 100_000}
    answer = browser.post("/signin", data=form)
    assert answer.status_code == 413 and answer.headers["content-type"].startswith("text/html")
    assert "over the limit" in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_a_new_password_ends_the_admins_open_sessions(tmp_path):
    app = _console(tmp_path)
    dana, other = _browser(app, "10.0.0.1"), _browser(app, "10.0.0.2")
    assert _sign_in(dana, PASSWORD).status_code == 303
    assert _sign_in(other, PASSWORD).status_code == 303
    assert dana.get("/approvals").status_code == 200
    # As `flip site console set-password` does while the console runs (a leaked password).
    set_password(password_path(tmp_path / "ledger.sqlite"), "dana", "a brand new password")
    for browser in (dana, other):
        answer = browser.get("/approvals")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert _sign_in(dana, "a brand new password").status_code == 303
    assert dana.get("/approvals").status_code == 200


def test_an_admin_taken_out_of_the_password_file_is_signed_out(tmp_path):
    app = _console(tmp_path)
    path = password_path(tmp_path / "ledger.sqlite")
    set_password(path, "eve", "eve's console password")
    eve = _browser(app, "10.0.0.5")
    assert _sign_in(eve, "eve's console password", name="eve").status_code == 303
    kept = orjson.loads(path.read_bytes())
    del kept["eve"]
    path.write_bytes(orjson.dumps(kept))
    answer = eve.get("/approvals")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


@pytest.mark.slow
def test_the_served_console_ignores_x_forwarded_for_unless_told_a_proxy_is_in_front(tmp_path):
    """`flip site console` on loopback: a local client naming another address in
    X-Forwarded-For on each guess still meets the per-address limit."""
    _console(tmp_path)
    port = free_port()
    config = str(tmp_path / "site.yaml")
    console = subprocess.Popen(
        [*FLIP, "site", "console", "--site-config", config, "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url) as browser:
            wait_for(lambda: _answers(browser), "the site console", timeout=60)
            codes = []
            for i in range(signin.ADDRESS_FAILURES + 1):
                token = CSRF.search(browser.get("/signin").text).group(1)
                form = {"csrf": token, "name": f"guess{i}", "password": "a wrong password!"}
                spoofed = {"X-Forwarded-For": f"10.9.9.{i}"}
                codes.append(browser.post("/signin", data=form, headers=spoofed).status_code)
    finally:
        console.terminate()
        console.wait(timeout=15)
    assert codes == [401] * signin.ADDRESS_FAILURES + [429]


def _answers(browser: httpx.Client) -> bool:
    try:
        return browser.get("/signin").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_the_served_console_answers_only_to_its_own_host_names(tmp_path):
    """A page of another site whose name was rebound to 127.0.0.1 (DNS rebinding) reaches the
    console with its own name as Host: refused, so it cannot guess passwords from the admin's
    own browser and address."""
    _console(tmp_path)
    port = free_port()
    config = str(tmp_path / "site.yaml")
    command = [*FLIP, "site", "console", "--site-config", config, "--port", str(port)]
    console = subprocess.Popen(
        [*command, "--allowed-host", "console.example.org"], stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            wait_for(lambda: _answers(browser), "the site console", timeout=60)
            codes = {
                host: browser.get("/signin", headers={"Host": host}).status_code
                for host in (
                    f"127.0.0.1:{port}",
                    f"localhost:{port}",
                    f"[::1]:{port}",
                    "console.example.org",
                    f"rebound.example.net:{port}",
                    "",
                )
            }
    finally:
        console.terminate()
        console.wait(timeout=15)
    assert codes == {
        f"127.0.0.1:{port}": 200,
        f"localhost:{port}": 200,
        f"[::1]:{port}": 200,
        "console.example.org": 200,
        f"rebound.example.net:{port}": 400,
        "": 400,
    }


def test_a_console_given_its_host_names_refuses_any_other(tmp_path):
    config = tmp_path / "site.yaml"
    SiteConfig(name="north", store="store.duckdb", ledger="ledger.sqlite").save(config)
    app = create_app(config, hosts=frozenset({"127.0.0.1", "[::1]"}))
    browser = TestClient(app, base_url="http://127.0.0.1:8400", follow_redirects=False)
    assert browser.get("/signin").status_code == 200
    assert browser.get("/signin", headers={"Host": "[::1]:8400"}).status_code == 200
    rebound = browser.get("/signin", headers={"Host": "rebound.example.net:8400"})
    assert rebound.status_code == 400 and "host name" in rebound.text
    assert "script-src 'self'" in rebound.headers["content-security-policy"]
    assert rebound.headers["x-content-type-options"] == "nosniff"
