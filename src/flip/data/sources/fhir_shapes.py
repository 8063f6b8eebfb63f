"""Required FHIR R4 elements FLIP reads little of, as exports leave them out or send them
in another version's shape: normalised before validation so that the record is kept.

An Encounter's `class` (R4: one Coding, required) only names the visit's concept; an
export that leaves it out, or sends R5's list of CodeableConcepts, still says when and
for whom the visit was, and every event of it refers to it. Without a class the visit
loads with visit_concept_id 0 (`fhir.Encounter.class.missing`); from an R5 list its
first coded Coding is the class (`fhir.Encounter.class.r5`); DSTU2's plain code
(`"class": "inpatient"`) is the code of the class (`fhir.Encounter.class.code`).
"""

from __future__ import annotations

from typing import Any

#: The Coding standing in for an absent class (read back as no class at all).
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_UNKNOWN = {"system": ABSENT, "code": "unknown"}


def encounter_class(resource: dict) -> tuple[dict, tuple[str, ...]]:
    """The Encounter with an R4 `class`, and the warning rule of what was done to get it."""
    found: Any = resource.get("class")
    if isinstance(found, dict):
        return resource, ()
    if isinstance(found, str) and found.strip():
        return {**resource, "class": {"code": found.strip()}}, ("fhir.Encounter.class.code",)
    if isinstance(found, list):
        coding = next(
            (
                c
                for concept in found
                if isinstance(concept, dict)
                for c in concept.get("coding") or []
                if isinstance(c, dict) and c.get("code")
            ),
            None,
        )
        if coding is not None:
            return {**resource, "class": coding}, ("fhir.Encounter.class.r5",)
    return {**resource, "class": _UNKNOWN}, ("fhir.Encounter.class.missing",)
