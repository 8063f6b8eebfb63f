"""A simulation ServerApp's grid that stops the run when Flower's simulation engine fails.

When Ray does not start, Flower's simulation runtime raises in the main thread but
leaves the ServerApp's thread waiting out each round's timeout (600 s by default);
when Ray's processes die mid-run, every later message gets an error reply and the
ServerApp goes on through empty rounds as if they were trained. `SupervisedGrid`
raises `EngineFailed` in the ServerApp's thread instead: at once when `stop` is set
(the runtime crashed), when a reply is an error other than those `tolerated` (by
default a site's ClientApp raising, as a refusal does: the engine's own errors, a dead
Ray actor say, are never tolerated), or when no site answers a round at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from flwr.app import Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from flip.fl.runtime.prompt_grid import PromptGrid

#: Error codes a site's own ClientApp gives (a refusal or a fault in its code); any other
#: error reply comes from the engine carrying the message (a dead Ray actor, say).
SITE_ERRORS = (ErrorCode.CLIENT_APP_RAISED_EXCEPTION,)


class EngineFailed(RuntimeError):
    """The simulation engine failed; the message says how, in one line."""


class SupervisedGrid(PromptGrid):
    """`grid`, stopped by `stop` or by an engine's error reply; see the module's text."""

    def __init__(
        self,
        grid: Grid,
        stop: threading.Event,
        tolerated: tuple[int, ...] = SITE_ERRORS,
        interval: float = 0.1,
    ) -> None:
        super().__init__(grid, interval)
        self.stop = stop
        self.tolerated = tolerated
        self.failure: str | None = None

    def fail(self, reason: str) -> EngineFailed:
        """Record `reason`, stop the run, and return the exception to raise."""
        self.failure = self.failure or reason
        self.stop.set()
        return EngineFailed(self.failure)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that have arrived; raises once the run has been stopped."""
        if self.stop.is_set():
            raise self.fail("the simulation engine stopped")
        replies = list(super().pull_messages(message_ids))
        for reply in replies:
            if reply.has_error() and reply.error.code not in self.tolerated:
                raise self.fail(_failure(reply))
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """As `PromptGrid.send_and_receive`, but a round no site answered is a failure."""
        messages = list(messages)
        replies = list(super().send_and_receive(messages, timeout=timeout))
        if messages and not replies and timeout is not None:
            raise self.fail(f"no site answered within {timeout:g} s")
        return replies


def _failure(reply: Message) -> str:
    """An error reply as one line: who failed (a site's ClientApp or the engine) and why."""
    lines = [s.strip() for s in reply.error.reason.splitlines() if s.strip()]
    reason = (lines[0] if lines else "no reason given").replace("<class '", "")
    reason = reason.replace("'>:<'", ": ").rstrip("'>")
    if reply.error.code in SITE_ERRORS:
        return f"a site's ClientApp failed: {reason}"
    return f"the simulation engine failed: {reason}"
