"""The signed-in user's account: password, second factor and named API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from flip.hub.routes import sessions as sessions_api
from flip.hub.routes import tokens as tokens_api
from flip.hub.schemas import NamedTokenIn, PasswordIn, PathId
from flip.hub.web import reads
from flip.hub.web.pages import SignedIn, WebRoute, page, read
from flip.hub.web.security import check_csrf
from flip.webkit.render import see_other

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])


async def _account_page(request: Request, who: SignedIn, **shown: object):
    mine = await read(request, lambda conn: reads.own_account(conn, who.id))
    policy = request.app.state.policy
    return page(
        request,
        "account.html",
        account=mine,
        max_days=policy.max_token_days,
        max_tokens=policy.max_tokens_per_user,
        **shown,
    )


@router.get("/account")
async def account(request: Request, who: SignedIn, done: str = ""):
    """The account page."""
    return await _account_page(request, who, done=done)


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


@router.post("/account/tokens")
async def new_token(
    request: Request,
    who: SignedIn,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    expires_in_days: Annotated[int, Form()],
):
    """A new named API token (shown once) within the hub's cap, beside the others."""
    body = NamedTokenIn(name=name, expires_in_days=expires_in_days, password=password)
    made = await tokens_api.create_token(user_id=who.id, body=body, request=request, who=who)
    return await _account_page(request, who, done="", shown=made)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(request: Request, who: SignedIn, token_id: PathId) -> Response:
    """End one API token now (the others and the web sign-in go on); 404 if not the user's."""
    await tokens_api.revoke_token(user_id=who.id, token_id=token_id, request=request, who=who)
    return see_other("/account?done=token-revoked")
