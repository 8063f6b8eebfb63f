"""Refuse, with 422 and where it sits, a JSON body the hub could not store or send back.

One guard in front of every route: NaN and infinities, integers beyond 64 bits,
nesting deeper than flip.bounds allows, NUL characters (PostgreSQL text cannot hold
them) and lone surrogates (not Unicode) never reach a route, a database or a response.
An API call's query string is held to the same bounds (a NUL in `?search=` reached
PostgreSQL as a 500); the web app's pages check theirs with their forms.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flip.bounds import json_problems
from flip.hub.prefix import API_PREFIX

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The problems named in one answer (a body may hold thousands).
_MOST = 20


def body_problems(body: bytes) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for a JSON body no store can keep; [] when fine."""
    if not body.strip():
        return []
    try:
        value = json.loads(body)
    except RecursionError:
        return [_error(("body",), "JSON nested too deep to parse")]
    except ValueError as exc:
        return [_error(("body",), f"invalid JSON: {str(exc)[:200]}")]
    problems = json_problems(value)[:_MOST]
    return [_error(("body", *where), why) for where, why in problems]


def query_problems(query: bytes) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for a query string holding what no store can keep
    (NUL, lone surrogates); [] when fine."""
    if not query:
        return []
    fields = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    problems = []
    for name, value in fields:
        for where, why in json_problems({name: value})[:1]:
            problems.append(_error(("query", *where), why))
    return problems[:_MOST]


def _error(where: tuple, why: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": list(where), "msg": why}


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI may read the body as JSON: no media type given, or any Content-Type
    header (a request may send several; FastAPI reads the first) naming a JSON one."""
    kinds = [
        value.split(b";")[0].strip().lower()
        for name, value in scope["headers"]
        if name.lower() == b"content-type"
    ]
    return not kinds or any(
        not kind or kind == b"application/json" or kind.endswith(b"+json") for kind in kinds
    )


class JsonGuard:
    """ASGI middleware: read a JSON body once, refuse it with 422 if out of bounds, else
    hand it on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the query string, and the body of a request that has one, before any route
        reads them."""
        if (
            scope["type"] == "http"
            and scope["path"].startswith(API_PREFIX)
            and (problems := query_problems(scope["query_string"]))
        ):
            await _answer(send, 422, problems)
            return
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except HTTPException as exc:
            await _answer(send, exc.status_code, exc.detail)
            return
        body = b"".join(chunks)
        if problems := body_problems(body):
            await _answer(send, 422, problems)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _answer(send: Send, status: int, detail: Any) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
