"""Load a SNOMED CT RF2 snapshot (the site's own licensed release) as OMOP vocabulary rows.

Concepts keep the concept_id they already have in the store (from an Athena
download); new ones get ids from the local range above 2,000,000,000. The
domain comes from the semantic tag of the fully specified name; IS-A
relationships become "Is a"/"Subsumes" rows and the concept_ancestor closure.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.terminology.athena import merge_rows

FSN = "900000000000003001"
SYNONYM = "900000000000013009"
IS_A = "116680003"
LOCAL_START = 2_000_000_000
END_OF_TIME = date(2099, 12, 31)

#: Semantic tag -> OMOP domain.
TAG_DOMAINS = {
    "disorder": "Condition",
    "finding": "Condition",
    "morphologic abnormality": "Observation",
    "procedure": "Procedure",
    "regime/therapy": "Procedure",
    "observable entity": "Measurement",
    "substance": "Drug",
    "product": "Drug",
    "medicinal product": "Drug",
    "clinical drug": "Drug",
    "specimen": "Specimen",
    "body structure": "Spec Anatomic Site",
    "qualifier value": "Meas Value",
    "physical object": "Device",
}


def _rows(folder: Path, prefix: str) -> list[dict[str, str]]:
    matches = sorted(folder.rglob(f"{prefix}*Snapshot*.txt"))
    if not matches:
        raise FileNotFoundError(f"{folder}: no {prefix}…Snapshot….txt (is this an RF2 release?)")
    csv.field_size_limit(sys.maxsize)
    out: list[dict[str, str]] = []
    for path in matches:
        with path.open(newline="", encoding="utf-8") as handle:
            out.extend(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return out


def _tag(fsn: str) -> str:
    return fsn[fsn.rfind("(") + 1 : -1] if fsn.endswith(")") and "(" in fsn else ""


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def load_rf2(store: Store, folder: Path) -> dict[str, int]:
    """Load concepts, preferred names, IS-A links and their closure; return rows per table."""
    concepts = _rows(folder, "sct2_Concept_")
    descriptions = _rows(folder, "sct2_Description_")
    relationships = _rows(folder, "sct2_Relationship_")
    fsn: dict[str, str] = {}
    synonym: dict[str, str] = {}
    for d in descriptions:
        if d["active"] == "1":
            (fsn if d["typeId"] == FSN else synonym if d["typeId"] == SYNONYM else {}).setdefault(
                d["conceptId"], d["term"]
            )
    ids = _concept_ids(store, [c["id"] for c in concepts])
    concept_rows = []
    for c in concepts:
        name = fsn.get(c["id"], "")
        preferred = synonym.get(c["id"]) or name[: name.rfind(" (")] if name else c["id"]
        domain = TAG_DOMAINS.get(_tag(name), "Observation")
        active = c["active"] == "1"
        concept_rows.append(
            {
                "concept_id": ids[c["id"]],
                "concept_name": (preferred or c["id"])[:255],
                "domain_id": domain,
                "vocabulary_id": "SNOMED",
                "concept_class_id": (_tag(name) or "Concept").title()[:20],
                "standard_concept": "S" if active else None,
                "concept_code": c["id"],
                "valid_start_date": _day(c["effectiveTime"]),
                "valid_end_date": END_OF_TIME if active else _day(c["effectiveTime"]),
                "invalid_reason": None if active else "D",
            }
        )
    parents: dict[int, set[int]] = defaultdict(set)
    links = []
    for r in relationships:
        if r["active"] != "1" or r["typeId"] != IS_A:
            continue
        child, parent = ids.get(r["sourceId"]), ids.get(r["destinationId"])
        if child is None or parent is None:
            continue
        parents[child].add(parent)
        start = _day(r["effectiveTime"])
        for a, b, kind in ((child, parent, "Is a"), (parent, child, "Subsumes")):
            links.append(
                {
                    "concept_id_1": a,
                    "concept_id_2": b,
                    "relationship_id": kind,
                    "valid_start_date": start,
                    "valid_end_date": END_OF_TIME,
                    "invalid_reason": None,
                }
            )
    counts = {
        "concept": merge_rows(store, schema.concept, ("concept_id",), concept_rows),
        "concept_relationship": merge_rows(
            store,
            schema.concept_relationship,
            ("concept_id_1", "concept_id_2", "relationship_id"),
            links,
        ),
        "concept_ancestor": merge_rows(
            store,
            schema.concept_ancestor,
            ("ancestor_concept_id", "descendant_concept_id"),
            _ancestors(list(ids.values()), parents),
        ),
    }
    return counts


def _concept_ids(store: Store, codes: list[str]) -> dict[str, int]:
    c = schema.concept
    with store.connect() as conn:
        known = dict(
            conn.execute(
                select(c.c.concept_code, c.c.concept_id).where(c.c.vocabulary_id == "SNOMED")
            ).all()
        )
        top = conn.execute(select(func.max(c.c.concept_id))).scalar() or 0
    next_id = max(top + 1, LOCAL_START + 1) if top >= LOCAL_START else LOCAL_START + 1
    ids = {}
    for code in sorted(codes, key=int):
        if code in known:
            ids[code] = known[code]
        else:
            ids[code] = next_id
            next_id += 1
    return ids


def _ancestors(concepts: list[int], parents: dict[int, set[int]]):
    """concept_ancestor rows: each concept with itself (level 0) and every ancestor."""
    for concept in concepts:
        levels: dict[int, tuple[int, int]] = {concept: (0, 0)}
        frontier = {concept: 0}
        while frontier:
            nxt: dict[int, int] = {}
            for node, depth in frontier.items():
                for parent in parents.get(node, ()):
                    low, high = levels.get(parent, (depth + 1, depth + 1))
                    levels[parent] = (min(low, depth + 1), max(high, depth + 1))
                    if parent not in nxt or nxt[parent] < depth + 1:
                        nxt[parent] = depth + 1
            frontier = nxt
        for ancestor, (low, high) in levels.items():
            yield {
                "ancestor_concept_id": ancestor,
                "descendant_concept_id": concept,
                "min_levels_of_separation": low,
                "max_levels_of_separation": high,
            }
