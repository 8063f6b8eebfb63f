"""Refuse request bodies over a size limit with 413, before any endpoint reads them."""

from __future__ import annotations

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The hub's default body limit: task specs and cohort definitions are a few kilobytes.
DEFAULT_MAX_BODY = 1 << 20


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` gets 413, whether declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the bytes as the endpoint reads them."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = orjson.dumps({"detail": self._detail(int(declared))})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
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

    def _detail(self, size: int) -> str:
        return (
            f"the request body ({size} bytes or more) is over the limit of {self.max_bytes} bytes"
        )
