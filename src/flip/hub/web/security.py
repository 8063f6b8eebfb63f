"""The hub web app's cookies and CSRF tokens, over the protections both web apps share
(`flip.webkit.security`)."""

from __future__ import annotations

from flip.webkit.security import (
    CSP,
    CSRF_FIELD,
    HEADERS,
    NO_STORE,
    Csrf,
    SecurityHeaders,
    refuse_unstorable,
    secure,
    server_error,
    set_cookie,
)

SESSION_COOKIE = "flip_session"
CSRF_COOKIE = "flip_csrf"

_csrf = Csrf(CSRF_COOKIE, SESSION_COOKIE)
csrf_token = _csrf.token
keep_csrf = _csrf.keep
check_csrf = _csrf.check

__all__ = [
    "CSP",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "HEADERS",
    "NO_STORE",
    "SESSION_COOKIE",
    "SecurityHeaders",
    "check_csrf",
    "csrf_token",
    "keep_csrf",
    "refuse_unstorable",
    "secure",
    "server_error",
    "set_cookie",
]
