"""Measurement values per concept: unit coverage, quantiles and outliers beyond Tukey's fences."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, case, func, select

from flip.data.cdm import schema
from flip.data.cdm.names import concept_names
from flip.data.validate.quality import kept

#: At most this many values per concept are read to compute its distribution.
VALUES_PER_CONCEPT = 100_000
#: Outlying values shown per concept.
OUTLIER_SAMPLES = 5


def tukey(values: list[float]) -> dict[str, Any]:
    """Quartiles, Tukey's fences (1.5 IQR beyond the quartiles) and the values beyond them."""
    data = np.asarray(values, dtype=float)
    q1, median, q3 = (float(q) for q in np.percentile(data, [25, 50, 75]))
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    outside = data[(data < low) | (data > high)]
    inside = data[(data >= low) & (data <= high)]
    extreme = sorted(outside.tolist(), key=lambda v: -abs(v - median))[:OUTLIER_SAMPLES]
    return {
        "n": int(data.size),
        "min": float(data.min()),
        "q1": q1,
        "median": median,
        "q3": q3,
        "max": float(data.max()),
        "low_fence": low,
        "high_fence": high,
        "whisker_low": float(inside.min()) if inside.size else q1,
        "whisker_high": float(inside.max()) if inside.size else q3,
        "outliers": int(outside.size),
        "outlier_samples": extreme,
    }


def _label(names: dict[int, str], concept_id: int, source_value: str | None) -> str:
    """A concept's name; for concept 0 the source value, for an id the vocabulary lacks, that."""
    if not concept_id:
        return f"unmapped: {source_value}"
    return names.get(concept_id) or f"concept {concept_id} (not in the vocabulary)"


def _concept_key():
    """Measurements grouped by concept; unmapped ones (concept 0) by their source value."""
    m = schema.measurement
    source = case((m.c.measurement_concept_id == 0, m.c.measurement_source_value), else_=None)
    return m.c.measurement_concept_id, source.label("source_value")


def unit_coverage(
    conn: Connection, top: int = 30, excluded: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """Share of numeric measurement rows with a unit concept, overall and per concept (the
    `excluded` persons' rows left out)."""
    m = schema.measurement
    concept, source = _concept_key()
    numeric = m.c.value_as_number.is_not(None)
    with_unit = func.sum(case((and_(numeric, m.c.unit_concept_id != 0), 1), else_=0))
    numbers = func.sum(case((numeric, 1), else_=0))
    rows = conn.execute(
        select(concept, source, func.count(), numbers, with_unit)
        .where(kept(m.c.person_id, excluded))
        .group_by(concept, source)
        .order_by(func.count().desc())
    ).all()
    names = concept_names(conn, {int(r[0]) for r in rows[:top]})
    by_concept = [
        {
            "concept_id": int(cid),
            "concept_name": _label(names, int(cid), src),
            "rows": int(n),
            "numeric": int(num or 0),
            "with_unit": int(unit or 0),
            "share": round(int(unit or 0) / int(num), 4) if num else None,
        }
        for cid, src, n, num, unit in rows[:top]
    ]
    total_numeric = sum(int(r[3] or 0) for r in rows)
    total_unit = sum(int(r[4] or 0) for r in rows)
    return {
        "rows": sum(int(r[2]) for r in rows),
        "numeric": total_numeric,
        "with_unit": total_unit,
        "share": round(total_unit / total_numeric, 4) if total_numeric else None,
        "by_concept": by_concept,
    }


def value_distributions(conn: Connection, top: int = 20) -> list[dict[str, Any]]:
    """Quantiles and Tukey outliers of value_as_number per measurement concept and unit, for
    the `top` largest groups: two queries (the groups, then at most VALUES_PER_CONCEPT values
    of each), whatever the number of groups."""
    m = schema.measurement
    concept, source = _concept_key()
    numeric = m.c.value_as_number.is_not(None)
    groups = (
        select(concept, source, m.c.unit_concept_id, func.count().label("n"))
        .where(numeric)
        .group_by(concept, source, m.c.unit_concept_id)
        .order_by(func.count().desc())
        .limit(top)
        .subquery()
    )
    found = conn.execute(select(*groups.c[:3]).order_by(groups.c.n.desc())).all()
    if not found:
        return []
    in_group = and_(
        m.c.measurement_concept_id == groups.c.measurement_concept_id,
        source.is_not_distinct_from(groups.c.source_value),
        m.c.unit_concept_id.is_not_distinct_from(groups.c.unit_concept_id),
    )
    key = (groups.c.measurement_concept_id, groups.c.source_value, groups.c.unit_concept_id)
    numbered = (
        select(*key, m.c.value_as_number, func.row_number().over(partition_by=key).label("i"))
        .select_from(m.join(groups, in_group))
        .where(numeric)
        .subquery()
    )
    values: dict[tuple, list[float]] = {tuple(g): [] for g in found}
    for cid, src, unit, value in conn.execute(
        select(*numbered.c[:4]).where(numbered.c.i <= VALUES_PER_CONCEPT)
    ):
        values[(cid, src, unit)].append(float(value))
    names = concept_names(conn, {int(g[0]) for g in found} | {int(g[2] or 0) for g in found})
    return [
        {
            "concept_id": int(cid),
            "concept_name": _label(names, int(cid), src),
            "unit_concept_id": int(unit or 0),
            "unit": names.get(int(unit or 0)) or "no unit concept",
            **tukey(values[(cid, src, unit)]),
        }
        for cid, src, unit in found
        if values[(cid, src, unit)]
    ]
