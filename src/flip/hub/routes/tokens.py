"""A user's named API tokens: list, create (capped, with the password from a session), revoke.

The user themself or an admin may list and revoke; only the user creates one (a token an
admin made for them would act as them, and the audit would name them). Another user's
token is never found under one's own id. An admin revoking the user's access
(`DELETE /users/{id}/token`) ends all.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import Connection

from flip.hub import api_tokens, audit
from flip.hub.auth import Caller, Principal
from flip.hub.routes.admin import active_user, found_user
from flip.hub.routes.sessions import confirm_password
from flip.hub.schemas import ApiTokenInfo, ApiTokenOut, NamedTokenIn, PathId
from flip.hub.transactions import Conn, ReadConn, writes

router = APIRouter(tags=["tokens"])


def _owner_or_admin(who: Principal, user_id: int) -> None:
    if who.kind != "user" or (who.role != "admin" and who.id != user_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin or the user may do this")


def _owner(who: Principal, user_id: int) -> None:
    if who.kind != "user" or who.id != user_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only the user may create their own API tokens"
        )


@router.get("/users/{user_id}/tokens")
def list_tokens(user_id: PathId, conn: ReadConn, who: Caller) -> list[ApiTokenInfo]:
    """The user's API tokens by name and prefix (never the tokens), with their dates."""
    _owner_or_admin(who, user_id)
    found_user(conn, user_id)
    return [ApiTokenInfo(**row) for row in api_tokens.listed(conn, user_id)]


@router.post("/users/{user_id}/tokens", status_code=201)
async def create_token(
    user_id: PathId, body: NamedTokenIn, request: Request, who: Caller
) -> ApiTokenOut:
    """A new named API token (shown once) beside the user's others; its lifetime is at most
    the hub's cap (and, made with an API token, that token's), and from a session the
    caller's password is needed. Only the user themself may (an admin too gets 403)."""
    _owner(who, user_id)
    policy = request.app.state.policy
    days, most = policy.token_days(body.expires_in_days), policy.max_tokens_per_user
    if who.session is not None:
        await confirm_password(request, who, body.password)

    def job(conn: Connection) -> ApiTokenOut:
        row = active_user(conn, user_id)
        try:
            made = api_tokens.mint(conn, user_id, body.name, days, who.token_expires, most)
        except (api_tokens.TakenName, api_tokens.TooManyTokens) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        detail = {"token": body.name, "days": days}
        audit.append(conn, who.label, "user.token.create", f"user:{row.name}", detail)
        return ApiTokenOut(**vars(made))

    return await request.app.state.writer.run(job)


@router.delete("/users/{user_id}/tokens/{token_id}", status_code=204)
@writes
def revoke_token(user_id: PathId, token_id: PathId, conn: Conn, who: Caller) -> None:
    """End one of the user's API tokens now; their other tokens, sessions and password go on."""
    _owner_or_admin(who, user_id)
    row = found_user(conn, user_id)
    try:
        name = api_tokens.end(conn, user_id, token_id)
    except api_tokens.NoSuchToken as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    audit.append(conn, who.label, "user.token.end", f"user:{row.name}", {"token": name})
