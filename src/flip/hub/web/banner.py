"""The maintenance banner: one message an admin sets, shown at the top of every page."""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, delete, insert, select

from flip.hub import audit
from flip.hub.db import hub_settings

KEY = "banner"
#: Seconds a process keeps the banner it read before reading it again (another hub
#: process may have changed it); this process's own changes show at once.
TTL = 5.0
MAX_LENGTH = 500


class Banner:
    """The banner's text as last read, read again after `TTL` seconds."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.text = ""
        self.read_at = float("-inf")

    def current(self) -> str:
        """The banner's text ("" when none), from the database at most every `TTL` seconds."""
        if time.monotonic() - self.read_at > TTL:
            with self.engine.connect() as conn:
                self.text = read(conn)
            self.read_at = time.monotonic()
        return self.text

    def keep(self, text: str) -> None:
        """Remember the text this process just stored."""
        self.text, self.read_at = text, time.monotonic()


def read(conn: Connection) -> str:
    """The stored banner's text, or ""."""
    found = conn.execute(select(hub_settings.c.value).where(hub_settings.c.key == KEY)).scalar()
    return found or ""


def store(conn: Connection, text: str, actor: str) -> None:
    """Set the banner (an empty text clears it), audited."""
    conn.execute(delete(hub_settings).where(hub_settings.c.key == KEY))
    if text:
        conn.execute(insert(hub_settings).values(key=KEY, value=text, updated_by=actor))
    action = "hub.banner.set" if text else "hub.banner.clear"
    audit.append(conn, actor, action, "hub", {"text": text} if text else {})
