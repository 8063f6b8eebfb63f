"""Password login: sessions that expire within hours, logout, and setting a password.

Password checks run on the hub's argon2 threads (never in the writer thread that
every write shares) and wrong guesses are throttled per account and per address.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, delete, insert, select, update

from flip.hub import access, api_tokens, audit, mfa
from flip.hub.auth import Caller, Principal, new_token, token_hash
from flip.hub.db import now, sessions, users
from flip.hub.schemas import LoginIn, PasswordIn, PathId, TokenOut
from flip.hub.transactions import Conn, reading, writes
from flip.webkit.throttle import client_address

router = APIRouter(tags=["sessions"])

#: What the API says when a call is throttled (declared in the OpenAPI schema).
THROTTLED = {429: {"description": "Too many wrong passwords: wait the Retry-After seconds."}}


#: A refused login says the same whichever part was wrong (a right password is not told).
WRONG_LOGIN = (
    "wrong user name, password or one-time code (`code`, needed once the user enrolled TOTP)"
)


async def _stored_hash(request: Request, user: int | str) -> object:
    """The user row (id, name, role, password hash, revoked, TOTP on, their newest API
    token's hash) by id or by name (whatever its case, `access.by_name`), or None."""

    def read():
        with reading(request.app.state.engine) as conn:
            query = select(
                users.c.id,
                users.c.name,
                users.c.role,
                users.c.password_hash,
                users.c.revoked_at,
                users.c.totp_enabled_at,
                api_tokens.newest_hash(users.c.id).label("token_hash"),
                users.c.password_one_time,
                users.c.password_expires_at,
            )
            if isinstance(user, int):
                return conn.execute(query.where(users.c.id == user)).first()
            return conn.execute(access.by_name(query, user)).first()

    return await run_in_threadpool(read)


async def checked_password(
    request: Request,
    name: str,
    password: str,
    user_id: int,
    wrong: tuple[int, str] = (status.HTTP_401_UNAUTHORIZED, "wrong user name or password"),
) -> object:
    """The user (by id, called `name`) whose password this is, counted by the throttle;
    `wrong` (status, message) if it is not, 429 if throttled."""
    address = client_address(request)
    stamp = await request.app.state.throttle.attempt(name, address)
    user = await _stored_hash(request, user_id)
    if not await request.app.state.passwords.verify(user and user.password_hash, password):
        raise HTTPException(*wrong)
    await request.app.state.throttle.succeeded(name, address, stamp)
    return user


async def confirm_password(
    request: Request, who: Principal, password: str | None, field: str = "password"
) -> None:
    """Ask a session's user for their password again, sent as `field` (for what outlives the
    session: a token, a new user, another user's password)."""
    if not password:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"from a session this needs your password again (`{field}`)"
        )
    wrong = (status.HTTP_403_FORBIDDEN, "the password is wrong")
    await checked_password(request, who.name, password, who.id, wrong)


async def checked_login(request: Request, name: str, password: str, code: str | None) -> object:
    """The user signing in with this password and, once they enrolled TOTP, this one-time
    (or recovery) code; 401 if either is wrong (both count against the throttle) or the
    password is a one-time one past its end, 403 if revoked, 429 if throttled."""
    address = client_address(request)
    throttle = request.app.state.throttle
    stamp = await throttle.attempt(name, address)
    user = await _stored_hash(request, name)
    if not await request.app.state.passwords.verify(user and user.password_hash, password):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, WRONG_LOGIN)
    ends = user.password_expires_at
    if user.password_one_time and ends is not None and now() >= ends:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this one-time password expired: ask an admin for a new one",
        )
    if user.totp_enabled_at is not None and not await request.app.state.writer.run(
        lambda conn: mfa.accept(conn, user.id, code), wake=False
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, WRONG_LOGIN)
    await throttle.succeeded(name, address, stamp)
    if user.revoked_at is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "this user's access is revoked: ask an admin to restore it"
        )
    return user


async def open_session(
    request: Request, user_id: int, name: str, hours: int, web: bool = False
) -> str:
    """A new session token for the user (they must not be revoked), lasting `hours`;
    `web` marks a session the web app's sign-in opened (only those open the web app)."""

    def job(conn: Connection) -> str:
        revoked = conn.execute(select(users.c.revoked_at).where(users.c.id == user_id)).scalar()
        if revoked is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this user's access is revoked")
        token = new_token("flip_l")
        expires = now() + timedelta(hours=hours)
        conn.execute(
            insert(sessions).values(
                user_id=user_id, token_hash=token_hash(token), expires_at=expires, web=web
            )
        )
        audit.append(conn, f"user:{name}", "user.login", f"user:{name}")
        return token

    return await request.app.state.writer.run(job)


@router.post("/login", responses=THROTTLED)
async def login(body: LoginIn, request: Request) -> TokenOut:
    """Exchange a user name and password (and, once the user enrolled TOTP on the web, a
    one-time `code`) for a session token (shown once)."""
    user = await checked_login(request, body.name, body.password, body.code)
    if user.password_one_time:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this is a one-time password: sign in on the web first and choose your own",
        )
    token = await open_session(request, user.id, user.name, body.expires_in_hours)
    return TokenOut(id=user.id, name=user.name, token=token)


@router.post("/logout", status_code=204)
@writes
def logout(conn: Conn, who: Caller) -> None:
    """End the session whose token makes this call."""
    if who.kind != "user":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "sites have no sessions")
    if who.session is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "this is not a session token; revoke an API token instead"
        )
    conn.execute(delete(sessions).where(sessions.c.id == who.session))
    audit.append(conn, who.label, "user.logout", who.label)


@router.put("/users/{user_id}/password", status_code=204, responses=THROTTLED)
async def set_password(user_id: PathId, body: PasswordIn, request: Request, who: Caller) -> None:
    """Set a user's password (an admin, or the user with their current one); ends their sessions.

    An admin doing so from a session gives their own password as `current_password`.
    """
    if who.kind != "user" or (who.role != "admin" and who.id != user_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin or the user may do this")
    row = await _stored_hash(request, user_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    if who.id == user_id and row.password_hash:
        wrong = (status.HTTP_403_FORBIDDEN, "the current password is wrong")
        current = body.current_password or ""
        await checked_password(request, row.name, current, user_id, wrong)
    elif who.id != user_id and who.session is not None:
        await confirm_password(request, who, body.current_password, "current_password")
    hashed = await request.app.state.passwords.hash(body.password)

    def job(conn: Connection) -> None:
        conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(password_hash=hashed, password_one_time=False, password_expires_at=None)
        )
        conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        audit.append(conn, who.label, "user.password.set", f"user:{row.name}")

    await request.app.state.writer.run(job)
