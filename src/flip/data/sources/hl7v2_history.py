"""The history segments of an ADT patient group beside its diagnoses (DG1): procedures
(PR1 → procedure_occurrence, by its concept's domain) and allergies (AL1 → observation of
the allergen, whatever its domain: an allergy to a drug is never an exposure to it).

Each is one record: without a code it is quarantined alone (`hl7.pr1.code_missing`,
`hl7.al1.code_missing`); a time that does not parse is nulled with a warning and the
message time stands.
"""

from __future__ import annotations

from typing import Any

from flip.data.sources.records import SourceEvent
from flip.data.terminology.vocabulary import hl7_system

#: Segment -> (code field, coding-method field, time field, default table, fixed table).
SEGMENTS = {
    "PR1": (3, 2, 5, "procedure_occurrence", False),
    "AL1": (3, 0, 6, "observation", True),
}


def history(r: Any, segment: Any, c: Any, index: int) -> None:
    """The record of one PR1 or AL1 of patient context `c`, appended to reader `r`."""
    name = str(segment[0])
    code_field, method_field, time_field, table, fixed = SEGMENTS[name]
    m = r.m
    code = m.get(segment, code_field) or m.get(segment, code_field, 2)
    number = m.get(segment, 1) or str(index)
    key = f"{c.visit_key or c.scope}/{name}/{m.get(segment, 1) or code or index}"
    if not code:
        rule = f"hl7.{name.lower()}.code_missing"
        r.reject(key, rule, f"{name} {number}: {name}-{code_field} has no code")
        return
    coded = m.get(segment, code_field)
    system = m.get(segment, code_field, 3) if coded else ""
    if not system and method_field:
        system = m.get(segment, method_field)
    alternate = m.get(segment, code_field, 4)
    r.out.append(
        SourceEvent(
            key=key,
            person_key=c.person_key,
            system=hl7_system(system),
            code=code,
            start=r.when(m.get(segment, time_field), f"{name}-{time_field}") or r.sent,
            default_table=table,
            location=r.location,
            raw=r.raw,
            visit_key=c.visit_key,
            warnings=tuple(r.warnings),
            alternate=(hl7_system(m.get(segment, code_field, 6)), alternate) if alternate else None,
            version=r.version,
            fixed_table=fixed,
        )
    )
