"""A harmonisation report for a project's concept set, as a site releases it.

Per standard concept of the set: how many rows map to it, from which source codes (code
system and code); and per CDM table the set lands in: the share of rows mapped at all and the
most frequent unmapped source codes, so a researcher sees that a site records a concept under
a local code it never mapped. Row counts below the site's smallest cell are released as "<k",
and a code of fewer rows than that is not named (it is counted under OTHER).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from flip.stats.federated import spec_hash
from flip.stats.suppression import hidden, is_small, suppress_counts

if TYPE_CHECKING:
    from flip.data.cdm.store import Store

#: Unmapped source codes looked at per table, most frequent first.
TOP_UNMAPPED = 20
#: Where the codes of fewer than min_cell rows each are counted together, unnamed.
OTHER = "other codes (each under the smallest cell)"


class HarmonisationSpec(BaseModel):
    """The concept set whose mapping each site reports."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["harmonisation"] = "harmonisation"
    concept_ids: list[int] = Field(min_length=1, max_length=500)

    def body(self) -> dict:
        """The spec as JSON, as it is hashed and sent."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """The SHA-256 a site approves."""
        return spec_hash(self.body())


def harmonisation_release(store: Store, spec: HarmonisationSpec, min_cell: int) -> dict:
    """This site's mapping of the concept set: `{"concepts": {ID: {"name", "table", "rows",
    "sources": {"SYSTEM|CODE": rows}}}, "tables": {TABLE: {"rows", "mapped", "unmapped":
    {CODE: rows}}}}`, counts suppressed."""
    from sqlalchemy import func, select

    from flip.data.cdm import schema
    from flip.data.cohort.optout import opted_out
    from flip.data.validate.quality import kept

    wanted = sorted(set(spec.concept_ids))
    c, source = schema.concept, schema.concept.alias("source")
    with store.connect() as conn:
        excluded = opted_out(conn)
        known = {
            row.concept_id: (row.concept_name, schema.DOMAIN_TABLES.get(row.domain_id or ""))
            for row in conn.execute(
                select(c.c.concept_id, c.c.concept_name, c.c.domain_id).where(
                    c.c.concept_id.in_(wanted)
                )
            )
        }
        concepts = {
            str(cid): {"name": known.get(cid, (None, None))[0], "table": None, "rows": 0}
            | {"sources": {}}
            for cid in wanted
        }
        tables = sorted({t for _, t in known.values() if t in schema.EVENT_COLUMNS})
        out_tables = {}
        for name in tables:
            table, columns = schema.metadata.tables[name], schema.EVENT_COLUMNS[name]
            concept = table.c[columns.concept]
            value = table.c[f"{columns.prefix}_source_value"]
            source_id = table.c.get(f"{columns.prefix}_source_concept_id")
            system = source.c.vocabulary_id if source_id is not None else None
            query = select(concept, value, func.count()).where(
                concept.in_(wanted), kept(table.c.person_id, excluded)
            )
            if source_id is not None:
                query = query.add_columns(system).select_from(
                    table.outerjoin(source, (source.c.concept_id == source_id) & (source_id != 0))
                )
                query = query.group_by(concept, value, system)
            else:
                query = query.group_by(concept, value)
            sources: dict[str, dict[str, int]] = {}
            for cid, code, n, *vocabulary in conn.execute(query):
                key = f"{(vocabulary[0] if vocabulary else None) or 'source'}|{code or ''}"
                sources.setdefault(str(cid), {})
                sources[str(cid)][key] = sources[str(cid)].get(key, 0) + int(n)
            for cid, found in sources.items():
                concepts[cid] |= {
                    "table": name,
                    "rows": sum(found.values()),
                    "sources": found,
                }
            alive = kept(table.c.person_id, excluded)
            rows = conn.execute(select(func.count()).select_from(table).where(alive)).scalar_one()
            unmapped = conn.execute(
                select(value, func.count())
                .where(concept == 0, alive)
                .group_by(value)
                .order_by(func.count().desc(), value)
                .limit(TOP_UNMAPPED)
            ).all()
            mapped = conn.execute(
                select(func.count()).select_from(table).where(concept != 0, alive)
            ).scalar_one()
            out_tables[name] = {
                "rows": int(rows),
                "mapped": int(mapped),
                "unmapped": {str(code): int(n) for code, n in unmapped},
            }
    for cid, found in concepts.items():
        if found["table"] is None and known.get(int(cid), (None, None))[1] is not None:
            found["table"] = known[int(cid)][1]
    return _suppressed(concepts, out_tables, min_cell)


def _cell(count: int, min_cell: int) -> int | str:
    return hidden(min_cell) if is_small(count, min_cell) else count


def _common(counts: dict[str, int], min_cell: int) -> dict[str, int]:
    """The codes of at least min_cell rows by name, the rarer ones together as OTHER: a
    source value seen a few times may be free text, and is never released."""
    kept = {code: n for code, n in counts.items() if n >= min_cell}
    rare = sum(n for code, n in counts.items() if n < min_cell)
    return kept | ({OTHER: rare} if rare else {})


def _suppressed(concepts: dict, tables: dict, min_cell: int) -> dict:
    """Row counts under min_cell released as "<min_cell" (zero stays zero), a table's mapped
    rows withheld (None) when its unmapped rows are so few, rare codes unnamed (`_common`)."""
    for found in concepts.values():
        found["rows"] = _cell(found["rows"], min_cell)
        found["sources"] = suppress_counts(_common(found["sources"], min_cell), min_cell)
    for table in tables.values():
        rest = table["rows"] - table["mapped"]
        table["rows"], table["mapped"] = (
            _cell(table["rows"], min_cell),
            None if is_small(rest, min_cell) else _cell(table["mapped"], min_cell),
        )
        unmapped = _common(table["unmapped"], min_cell)
        table["unmapped"] = {k: _cell(n, min_cell) for k, n in unmapped.items()}
    return {"concepts": concepts, "tables": tables, "min_cell": min_cell}
