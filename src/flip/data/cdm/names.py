"""Concept names from a store's vocabulary (its `concept` table), for people to read beside ids."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from flip.data.cdm import schema


def concept_names(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    """The name of each of `ids` the store's vocabulary holds (0 and unknown ids are left out)."""
    wanted = sorted({int(i) for i in ids if i})
    if not wanted:
        return {}
    c = schema.concept
    rows = conn.execute(select(c.c.concept_id, c.c.concept_name).where(c.c.concept_id.in_(wanted)))
    return {int(i): name for i, name in rows}
