"""Hash chaining for append-only audit logs, at the hub and at each site."""

from __future__ import annotations

import hashlib

import orjson

GENESIS = "0" * 64


def entry_hash(previous: str, entry: dict[str, object]) -> str:
    """The SHA-256 that seals `entry` onto a chain whose last hash is `previous`."""
    body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(previous.encode() + body).hexdigest()


def first_break(entries: list[tuple[dict[str, object], str]]) -> int | None:
    """Index of the first (entry, stored hash) that does not chain, or None if all do."""
    previous = GENESIS
    for index, (entry, stored) in enumerate(entries):
        if entry_hash(previous, entry) != stored:
            return index
        previous = stored
    return None
