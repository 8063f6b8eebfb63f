"""The second factor: TOTP (RFC 6238, pyotp) with one-time recovery codes.

A user enrols by scanning a QR code (rendered as SVG here, no network) and typing one
code; from then on every password sign-in, on the web and through the API, needs a
code too. A code works once (its time step is remembered); a recovery code works once.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import orjson
import pyotp
import qrcode
import qrcode.image.svg
from sqlalchemy import Connection, delete, select, update

from flip.hub import api_tokens, audit
from flip.hub.db import now, sessions, users

ISSUER = "FLIP hub"
RECOVERY_CODES = 10


def new_secret() -> str:
    """A fresh base32 TOTP secret."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, name: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code of `uri` as an inline SVG element (no script, no network)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    svg = image.to_string(encoding="unicode")
    return svg.replace("<svg ", '<svg role="img" aria-label="QR code to scan" ', 1)


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def new_recovery_codes(n: int = RECOVERY_CODES) -> tuple[list[str], str]:
    """`n` fresh recovery codes (shown once) and what to store: the JSON list of their hashes."""
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(n)]
    return codes, orjson.dumps([_digest(c) for c in codes]).decode()


def totp_step(secret: str, code: str) -> int | None:
    """The time step at which `code` is valid for `secret` (now, or one step either side)."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit()) or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(time.time()) // totp.interval
    for step in (current, current - 1, current + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


class StaleEnrolment(Exception):
    """The user changed since their enrolment began: a new password or API token, access
    revoked, or TOTP already on. They sign in again."""


def enrolment_state(password_hash: str | None, token_hash: str | None) -> str:
    """What a pending enrolment is bound to: the user's password and newest API token (its
    hash) as they were."""
    return hashlib.sha256(f"{password_hash}\n{token_hash}".encode()).hexdigest()


def may_enrol(conn: Connection, user_id: int, state: str) -> bool:
    """Whether the user still has no TOTP, is not revoked, and has the password and API
    token their enrolment began with (`state`, from `enrolment_state`)."""
    row = conn.execute(
        select(
            users.c.password_hash,
            api_tokens.newest_hash(users.c.id).label("token_hash"),
            users.c.revoked_at,
            users.c.totp_secret,
        ).where(users.c.id == user_id)
    ).first()
    return (
        row is not None
        and row.revoked_at is None
        and row.totp_secret is None
        and secrets.compare_digest(enrolment_state(row.password_hash, row.token_hash), state)
    )


def enable(
    conn: Connection, user_id: int, secret: str, code: str, actor: str, state: str
) -> list[str] | None:
    """Turn on TOTP for the user if `code` is valid for `secret`: their recovery codes, or
    None; StaleEnrolment (nothing written) if the user changed since `state` was taken."""
    if not may_enrol(conn, user_id, state):
        raise StaleEnrolment(f"user:{user_id}")
    step = totp_step(secret, code)
    if step is None:
        return None
    codes, stored = new_recovery_codes()
    conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.totp_secret.is_(None))
        .values(
            totp_secret=secret, totp_enabled_at=now(), totp_last_step=step, recovery_codes=stored
        )
    )
    audit.append(conn, actor, "user.mfa.enable", f"user:{user_id}")
    return codes


def reset(conn: Connection, user_id: int, actor: str) -> None:
    """Turn TOTP off for the user and end their sessions: they enrol again at their next
    web sign-in."""
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None, recovery_codes=None)
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    audit.append(conn, actor, "user.mfa.reset", f"user:{user_id}")


def accept(conn: Connection, user_id: int, code: str | None) -> bool:
    """Whether `code` is the user's current TOTP code (not used before) or an unused
    recovery code; either is then spent."""
    row = conn.execute(
        select(
            users.c.name, users.c.totp_secret, users.c.totp_last_step, users.c.recovery_codes
        ).where(users.c.id == user_id)
    ).first()
    if row is None or row.totp_secret is None or not code:
        return False
    # Each code is spent by an update naming what was read: of two hub processes checking
    # one code at once (on PostgreSQL), the second finds the row changed and is refused.
    step = totp_step(row.totp_secret, code)
    if step is not None and step > (row.totp_last_step or -1):
        unspent = (
            users.c.totp_last_step.is_(None)
            if row.totp_last_step is None
            else users.c.totp_last_step == row.totp_last_step
        )
        spent = conn.execute(
            update(users).where(users.c.id == user_id, unspent).values(totp_last_step=step)
        )
        return spent.rowcount == 1
    left = orjson.loads(row.recovery_codes or "[]")
    digest = _digest(code)
    if digest in left:
        left.remove(digest)
        spent = conn.execute(
            update(users)
            .where(users.c.id == user_id, users.c.recovery_codes == row.recovery_codes)
            .values(recovery_codes=orjson.dumps(left).decode())
        )
        if spent.rowcount != 1:
            return False
        audit.append(conn, f"user:{row.name}", "user.mfa.recovery", f"user:{row.name}")
        return True
    return False
