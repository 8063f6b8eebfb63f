"""Which parts of a Circe cohort expression FLIP runs, and the one-line error for the rest."""

from __future__ import annotations

from typing import Any

#: Circe criteria type -> the CDM table it reads.
CRITERIA_TABLES = {
    "ConditionOccurrence": "condition_occurrence",
    "ConditionEra": "condition_era",
    "DrugExposure": "drug_exposure",
    "DrugEra": "drug_era",
    "Measurement": "measurement",
    "Observation": "observation",
    "ProcedureOccurrence": "procedure_occurrence",
    "VisitOccurrence": "visit_occurrence",
    "Death": "death",
    "ObservationPeriod": "observation_period",
}

TOP_LEVEL = {
    "ConceptSets",
    "PrimaryCriteria",
    "AdditionalCriteria",
    "QualifiedLimit",
    "ExpressionLimit",
    "InclusionRules",
    "EndStrategy",
    "CensoringCriteria",
    "CollapseSettings",
    "CensorWindow",
    "Title",
    "cdmVersionRange",
}

#: Keys that name a criteria type wherever they appear in a Circe expression.
KNOWN_ELSEWHERE = {
    "DeviceExposure",
    "DoseEra",
    "Specimen",
    "VisitDetail",
    "PayerPlanPeriod",
    "LocationRegion",
    "Episode",
}


class UnsupportedCirce(ValueError):
    """The Circe expression uses an element FLIP does not run; the message names it."""


def _criteria_types(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CRITERIA_TABLES or key in KNOWN_ELSEWHERE:
                found.add(key)
            _criteria_types(value, found)
    elif isinstance(node, list):
        for item in node:
            _criteria_types(item, found)


def criteria_types(expression: dict[str, Any]) -> set[str]:
    """Every criteria type the expression uses, at any depth."""
    found: set[str] = set()
    _criteria_types(expression, found)
    return found


def check(expression: dict[str, Any]) -> set[str]:
    """Raise UnsupportedCirce for the first element FLIP does not run; return the tables read."""
    for key in expression:
        if key not in TOP_LEVEL:
            raise UnsupportedCirce(f"Circe element {key!r} is not supported (see docs/cohorts.md)")
    if not (expression.get("PrimaryCriteria") or {}).get("CriteriaList"):
        raise UnsupportedCirce("Circe expression has no PrimaryCriteria.CriteriaList")
    types = criteria_types(expression)
    for kind in sorted(types):
        if kind not in CRITERIA_TABLES:
            raise UnsupportedCirce(
                f"Circe criteria type {kind!r} is not supported (see docs/cohorts.md)"
            )
    end = expression.get("EndStrategy") or {}
    for key in end:
        if key != "DateOffset":
            raise UnsupportedCirce(
                f"Circe end strategy {key!r} is not supported (see docs/cohorts.md)"
            )
    return {"person", "observation_period"} | {CRITERIA_TABLES[t] for t in types}
