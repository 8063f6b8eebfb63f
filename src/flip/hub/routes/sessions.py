"""Password login: sessions that expire within hours, logout, and setting a password."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import delete, insert, select, update

from flip.hub import audit
from flip.hub.auth import Caller, new_token, token_hash
from flip.hub.db import now, sessions, users
from flip.hub.passwords import hash_password, verify_password
from flip.hub.schemas import LoginIn, PasswordIn, PathId, TokenOut
from flip.hub.transactions import Conn, writes

router = APIRouter(tags=["sessions"])


@router.post("/login")
@writes
def login(body: LoginIn, conn: Conn) -> TokenOut:
    """Exchange a user name and password for a session token (shown once)."""
    user = conn.execute(select(users).where(users.c.name == body.name)).first()
    if not verify_password(user.password_hash if user else None, body.password):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    assert user is not None
    token = new_token("flip_l")
    expires = now() + timedelta(hours=body.expires_in_hours)
    conn.execute(
        insert(sessions).values(user_id=user.id, token_hash=token_hash(token), expires_at=expires)
    )
    audit.append(conn, f"user:{user.name}", "user.login", f"user:{user.name}")
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


@router.put("/users/{user_id}/password", status_code=204)
@writes
def set_password(user_id: PathId, body: PasswordIn, conn: Conn, who: Caller) -> None:
    """Set a user's password (an admin, or the user with their current one); ends their sessions."""
    if who.kind != "user" or (who.role != "admin" and who.id != user_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin or the user may do this")
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    own = who.id == user_id
    if (
        own
        and row.password_hash
        and not verify_password(row.password_hash, body.current_password or "")
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the current password is wrong")
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=hash_password(body.password))
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    audit.append(conn, who.label, "user.password.set", f"user:{row.name}")
