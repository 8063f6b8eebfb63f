"""Server-sent events: a fragment of a page sent again whenever what it shows changes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from flip.hub.auth import READERS, Principal
from flip.hub.web.pages import web_principal

#: Seconds between looks at the database when no write in this process woke the stream
#: (a site's answer retires only its own cache, so it wakes no one).
POLL = 1.0
#: Seconds a stream lives at most; the browser's EventSource reconnects by itself.
LIFETIME = 300.0
#: Live streams one web session, and one user over all their sessions, may hold open at once
#: (each holds a connection and looks at the database every POLL s).
PER_SESSION = 4
PER_USER = 8

#: What a stream over its cap sends (after the view as it stands), in place of live updates.
TOO_MANY = (
    '<p class="notice" role="status">Live updates are off for this view: you have {open} '
    "open already. Close another tab and reload this page to follow it live.</p>"
)


class Streams:
    """The live streams open in this process, counted per web session and per user."""

    def __init__(self) -> None:
        self.sessions: Counter[int] = Counter()
        self.users: Counter[int] = Counter()

    def open(self, who: Principal) -> int | None:
        """Take a place for a stream of `who`'s, or None with how many they hold (at a cap)."""
        if self.sessions[who.session] >= PER_SESSION:
            return self.sessions[who.session]
        if self.users[who.id] >= PER_USER:
            return self.users[who.id]
        self.sessions[who.session] += 1
        self.users[who.id] += 1
        return None

    def close(self, who: Principal) -> None:
        """Give a stream's place back."""
        for counts, key in ((self.sessions, who.session), (self.users, who.id)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]


def _event(html: str, name: str) -> str:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


#: What a stream renders for the user as they are now: (HTML, whether it is final).
Render = Callable[[Principal], tuple[str, bool]]


async def _current(request: Request, roles: tuple[str, ...]) -> Principal | None:
    """The stream's user as the database has them now (role, disabled), or None once their
    web session no longer holds (ended, expired, revoked) or their role is not one of `roles`."""
    try:
        who = await web_principal(request)
    except HTTPException:
        return None
    return who if who.role in roles else None


def stream(
    request: Request, who: Principal, render: Render, roles: tuple[str, ...] = READERS
) -> StreamingResponse:
    """Send `render(user)`'s HTML as an event each time it changes, until it says it is final,
    the session ends (signed out, password changed, access revoked), the user's role is no
    longer one of `roles`, or `render` refuses (HTTPException: the user, as they are now, may
    no longer see it): the stream then says it is done. The user is read afresh on each tick.
    Past `who`'s cap of open streams it sends the view once, says why it is not live, and ends."""
    streams: Streams = request.app.state.streams

    async def events() -> AsyncIterator[str]:
        held = streams.open(who)
        if held is not None:
            try:
                html, _ = await run_in_threadpool(render, who)
            except HTTPException:
                html = ""
            yield _event(html + TOO_MANY.format(open=held), "update")
            yield _event("", "done")
            return
        try:
            async for event in _live(request, render, roles):
                yield event
        finally:
            streams.close(who)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _live(request: Request, render: Render, roles: tuple[str, ...]) -> AsyncIterator[str]:
    """The events of one live stream (see `stream`)."""
    turns = request.app.state.turns
    sent = None
    waited = 0.0
    while waited < LIFETIME:
        generation = turns.generation
        now = await _current(request, roles)
        if now is None:
            yield _event("", "done")
            return
        try:
            html, final = await run_in_threadpool(render, now)
        except HTTPException:  # no longer theirs to see (taken off the project, demoted)
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
