"""Server-sent events: a fragment of a page sent again whenever what it shows changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

#: Seconds between looks at the database when no write in this process woke the stream
#: (a site's answer retires only its own cache, so it wakes no one).
POLL = 1.0
#: Seconds a stream lives at most; the browser's EventSource reconnects by itself.
LIFETIME = 300.0


def _event(html: str, name: str) -> str:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


def stream(request: Request, render: Callable[[], tuple[str, bool]]) -> StreamingResponse:
    """Send `render()`'s HTML as an event each time it changes, until it says it is final."""
    turns = request.app.state.turns

    async def events() -> AsyncIterator[str]:
        sent = None
        waited = 0.0
        while waited < LIFETIME:
            generation = turns.generation
            html, final = await run_in_threadpool(render)
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
