"""Server-sent events: a fragment of a page sent again whenever what it shows changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from flip.hub.web.pages import web_principal

#: Seconds between looks at the database when no write in this process woke the stream
#: (a site's answer retires only its own cache, so it wakes no one).
POLL = 1.0
#: Seconds a stream lives at most; the browser's EventSource reconnects by itself.
LIFETIME = 300.0


def _event(html: str, name: str) -> str:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


async def _signed_in(request: Request) -> bool:
    """Whether the stream's web session still holds (not ended, expired or revoked)."""
    try:
        await web_principal(request)
    except HTTPException:
        return False
    return True


def stream(request: Request, render: Callable[[], tuple[str, bool]]) -> StreamingResponse:
    """Send `render()`'s HTML as an event each time it changes, until it says it is final,
    the session ends (signed out, password changed, access revoked) or `render` refuses
    (HTTPException: the user was taken off the project): the stream then says it is done."""
    turns = request.app.state.turns

    async def events() -> AsyncIterator[str]:
        sent = None
        waited = 0.0
        while waited < LIFETIME:
            generation = turns.generation
            if not await _signed_in(request):
                yield _event("", "done")
                return
            try:
                html, final = await run_in_threadpool(render)
            except HTTPException:  # no longer theirs to see (taken off the project)
                yield _event("", "done")
                return
            if html != sent:
                sent = html
                yield _event(html, "update")
            if final:
                yield _event("", "done")
                return
            if await request.is_disconnected():
                return
            await turns.wait(generation, POLL)
            waited += POLL

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
