"""Drive the hub's web app like a browser: cookies, CSRF fields, a TOTP device."""

from __future__ import annotations

import re
import time

import pyotp
from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


class Browser:
    """One browser: its own cookie jar on the hub app, and the user's authenticator."""

    def __init__(self, app) -> None:
        self.http = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        self.secret: str | None = None
        self.step = 0

    def csrf(self, path: str = "/signin") -> str:
        """The CSRF token of a page's forms."""
        found = CSRF.search(self.http.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def post(self, path: str, data: dict | None = None, page: str = "/signin", **kwargs):
        """Submit a form on `page` to `path`, with the page's CSRF token."""
        return self.http.post(path, data={"csrf": self.csrf(page), **(data or {})}, **kwargs)

    def code(self) -> str:
        """The authenticator's next unused code (one step on from the last, as time passes)."""
        totp = pyotp.TOTP(self.secret)
        self.step = max(self.step + 1, int(time.time()) // 30)
        return totp.generate_otp(min(self.step, int(time.time()) // 30 + 1))

    def sign_in(self, name: str, password: str) -> None:
        """Sign in; at the first sign-in enrol TOTP from the QR page's key."""
        if self.secret is None:
            answer = self.post("/signin", {"name": name, "password": password})
            assert answer.headers["location"] == "/signin/enrol", answer.text
            self.secret = SECRET.search(self.http.get("/signin/enrol").text).group(1)
            self.step = int(time.time()) // 30 - 1
            done = self.post("/signin/enrol", {"code": self.code()}, page="/signin/enrol")
            assert done.status_code == 200 and "recovery-codes" in done.text, done.text
            return
        answer = self.post("/signin", {"name": name, "password": password, "code": self.code()})
        assert answer.status_code == 303, answer.text
