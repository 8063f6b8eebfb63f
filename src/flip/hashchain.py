"""Hash chaining for append-only audit logs, at the hub and at each site."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

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


def anchor_problem(chain: Mapping[int, str], seq: int, digest: str) -> str | None:
    """Why a chain (seq -> hash) no longer holds the head (`seq`, `digest`) it once had.

    None when it does: entries appended since leave an old head where it was, while
    deleting the newest rows (truncation) or editing one and recomputing the hashes
    after it (a rewrite) moves it.
    """
    if seq == 0:
        return None
    end = max(chain, default=0)
    if seq > end:
        return f"truncated: entry {seq} was its head once, and the chain now ends at {end}"
    if chain.get(seq) != digest:
        return f"rewritten: entry {seq} no longer has the hash it had when its head was signed"
    return None
