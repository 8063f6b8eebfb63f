"""Refuse request bodies over a size limit with 413, before any endpoint reads them: JSON for
the API, the app's error page in words for its web pages."""

from __future__ import annotations

import orjson
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flip.webkit.routes import ErrorPage

#: The default body limit: task specs, cohort definitions and forms are a few kilobytes.
DEFAULT_MAX_BODY = 1 << 20


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` gets 413, whether declared or streamed. With
    an `error_page`, a path outside `api` gets it (HTML); the API gets JSON."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY,
        error_page: ErrorPage | None = None,
        api: str = "/api/",
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_page = error_page
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the bytes as the endpoint reads them (a page
        route turns the 413 raised then into its error page)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, self._detail(int(declared)))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail(received))
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, detail: str) -> None:
        """Answer 413 without reading the body: the error page, or JSON for the API."""
        if self.error_page is not None and not scope["path"].startswith(self.api):
            response = self.error_page(Request(scope), 413, detail)
            await response(scope, receive, send)
            return
        body = orjson.dumps({"detail": detail})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _detail(self, size: int) -> str:
        return (
            f"the request body ({size} bytes or more) is over the limit of {self.max_bytes} bytes"
        )
