"""The signed-in user's account: password, second factor and API token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from flip.hub import access
from flip.hub.routes import admin as admin_api
from flip.hub.routes import sessions as sessions_api
from flip.hub.schemas import PasswordIn, TokenRequest
from flip.hub.web import reads
from flip.hub.web.pages import SignedIn, WebRoute, page, read
from flip.hub.web.security import check_csrf
from flip.webkit.render import see_other

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])


@router.get("/account")
async def account(request: Request, who: SignedIn, done: str = ""):
    """The account page."""
    token = await read(request, lambda conn: reads.own_token(conn, who.id))
    return page(
        request,
        "account.html",
        token=token,
        done=done,
        max_days=request.app.state.policy.max_token_days,
    )


@router.post("/account/password")
async def change_password(
    request: Request,
    who: SignedIn,
    current_password: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> Response:
    """Change the password (the API's rule: the current one first); every session ends."""
    body = PasswordIn(password=password, current_password=current_password)
    await sessions_api.set_password(user_id=who.id, body=body, request=request, who=who)
    return see_other("/signin")


@router.post("/account/token")
async def new_token(
    request: Request,
    who: SignedIn,
    password: Annotated[str, Form()],
    expires_in_days: Annotated[int, Form()],
):
    """A new API token (shown once) within the hub's cap; the old one stops working."""
    body = TokenRequest(expires_in_days=expires_in_days, password=password)
    out = await admin_api.rotate_token(user_id=who.id, request=request, who=who, body=body)
    token = await read(request, lambda conn: reads.own_token(conn, who.id))
    return page(
        request,
        "account.html",
        token=token,
        shown=out.token,
        done="",
        max_days=request.app.state.policy.max_token_days,
    )


@router.post("/account/token/revoke")
async def revoke_token(request: Request, who: SignedIn) -> Response:
    """End the API token now (web sign-in still works)."""
    await request.app.state.writer.run(lambda conn: access.end_token(conn, who.id, who.label))
    return see_other("/account?done=token-revoked")
