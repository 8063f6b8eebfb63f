"""FLIP's own cohort JSON as a Circe expression, where Circe can say the same thing.

A FLIP cohort has no index date: everyone with a record, ever. In Circe the index is the
person's first observation period and each criterion an inclusion rule looking at all time,
in or out of observation. Age today, notes and images have no Circe equivalent.
"""

from __future__ import annotations

from typing import Any

from flip.data.cdm.rows import GENDERS
from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.cohort.circe.supported import CRITERIA_TABLES, UnsupportedCirce
from flip.data.cohort.definition import CohortDefinition, Criterion

_TYPES = {table: kind for kind, table in CRITERIA_TABLES.items()}
_ALL_TIME = {"Start": {"Coeff": -1}, "End": {"Coeff": 1}}


def _concept_set(i: int, criterion: Criterion) -> dict[str, Any]:
    items = [
        {"concept": {"CONCEPT_ID": c}, "includeDescendants": criterion.descendants}
        for c in criterion.concept_ids
    ]
    return {"id": i, "name": f"{criterion.table} {i}", "expression": {"items": items}}


def _range(low: Any, high: Any) -> dict[str, Any] | None:
    if low is not None and high is not None:
        return {"Value": low, "Op": "bt", "Extent": high}
    if low is not None:
        return {"Value": low, "Op": "gte"}
    if high is not None:
        return {"Value": high, "Op": "lte"}
    return None


def _criteria(i: int, criterion: Criterion) -> dict[str, Any]:
    kind = _TYPES.get(criterion.table)
    if kind is None or kind in ("Death", "ObservationPeriod"):
        raise UnsupportedCirce(f"criteria on {criterion.table} have no Circe equivalent")
    body: dict[str, Any] = {"CodesetId": i}
    start = _range(
        criterion.start and criterion.start.isoformat(), criterion.end and criterion.end.isoformat()
    )
    if start:
        body["OccurrenceStartDate"] = start
    if value := _range(criterion.value_min, criterion.value_max):
        body["ValueAsNumber"] = value
    return {"Criteria": {kind: body}, "StartWindow": _ALL_TIME, "IgnoreObservationPeriod": True}


def _rule(name: str, i: int, criterion: Criterion, present: bool) -> dict[str, Any]:
    occurrence = {"Type": 2, "Count": 1} if present else {"Type": 0, "Count": 0}
    item = {**_criteria(i, criterion), "Occurrence": occurrence}
    return {"name": name, "expression": {"Type": "ALL", "CriteriaList": [item]}}


def to_circe(definition: CohortDefinition) -> dict[str, Any]:
    """The definition as a Circe expression; UnsupportedCirce names what Circe cannot say."""
    if definition.age_min is not None or definition.age_max is not None:
        raise UnsupportedCirce(
            "age_min/age_max (age today) have no Circe equivalent (age at index)"
        )
    criteria = [*definition.include, *definition.exclude]
    rules = [
        _rule(
            f"has {c.table} {i}" if i < len(definition.include) else f"has no {c.table} {i}",
            i,
            c,
            i < len(definition.include),
        )
        for i, c in enumerate(criteria)
    ]
    if definition.sex:
        genders = [{"CONCEPT_ID": GENDERS[s]} for s in definition.sex]
        rules.append(
            {
                "name": "sex",
                "expression": {"Type": "ALL", "DemographicCriteriaList": [{"Gender": genders}]},
            }
        )
    return {
        "Title": definition.name,
        "ConceptSets": [_concept_set(i, c) for i, c in enumerate(criteria)],
        "PrimaryCriteria": {
            "CriteriaList": [{"ObservationPeriod": {"First": True}}],
            "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "First"},
        },
        "QualifiedLimit": {"Type": "First"},
        "ExpressionLimit": {"Type": "First"},
        "InclusionRules": rules,
        "CensoringCriteria": [],
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
    }


def as_circe(definition: CohortDefinition | CirceDefinition) -> CirceDefinition:
    """The cohort as a Circe definition: itself, or FLIP's exported (UnsupportedCirce where
    Circe cannot say the same thing)."""
    if isinstance(definition, CirceDefinition):
        return definition
    return CirceDefinition(name=definition.name, expression=to_circe(definition))
