"""A deployment ServerApp's grid that looks for replies every 0.1 s instead of every 3 s.

Flower's deployment grid (`HttpGrid.send_and_receive`) pushes a round's messages,
then pulls their replies every 3 seconds, a fixed interval no setting changes, so a
round that the sites answer in 1 s still ends 3 s after it started. `PromptGrid`
wraps that grid and does the same with Flower's public `push_messages` and
`pull_messages`, pulling every `interval` seconds; everything else goes to the grid
it wraps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.run import Run

#: Seconds between two pulls of the replies a round still waits for.
PULL_INTERVAL = 0.1


class PromptGrid(Grid):
    """`grid`, with replies pulled every `interval` seconds while a round waits for them."""

    def __init__(self, grid: Grid, interval: float = PULL_INTERVAL) -> None:
        self.grid = grid
        self.interval = interval

    def set_run(self, run: Run) -> None:
        """Set the run the wrapped grid works for."""
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        """The run the wrapped grid works for."""
        return self.grid.run

    def create_message(self, *args, **kwargs) -> Message:
        """A message made by the wrapped grid."""
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """The ids of the nodes connected now."""
        return self.grid.get_node_ids()

    def get_nodes(self) -> Iterable:
        """The nodes connected now."""
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push `messages`; their ids."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that have arrived to the messages `message_ids`."""
        return self.grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push `messages` and return their replies once all have come or `timeout` seconds
        have passed (None: wait for all)."""
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            arrived = list(self.pull_messages(waiting))
            replies.extend(arrived)
            waiting -= {m.metadata.reply_to_message_id for m in arrived}
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.interval)
        return replies

    def __getattr__(self, name: str) -> object:
        return getattr(self.grid, name)
