"""Which parts of a Circe cohort expression FLIP runs, and the one-line error for the rest."""

from __future__ import annotations

from functools import cache
from typing import Any

from flip.bounds import MAX_CONCEPTS, MAX_CRITERIA

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


#: Keys a criteria group (inclusion rule, additional or correlated criteria) may hold.
GROUP_KEYS = {"Type", "Count", "CriteriaList", "DemographicCriteriaList", "Groups"}
GROUP_TYPES = {"ALL", "ANY", "AT_LEAST", "AT_MOST"}
#: Occurrence types: exactly, at most, at least.
OCCURRENCE_TYPES = {0, 1, 2}
#: Comparisons of a numeric or date range, and of a text filter.
RANGE_OPS = {"lt", "lte", "eq", "!eq", "gt", "gte", "bt", "!bt"}
TEXT_OPS = {"startsWith", "endsWith", "contains", "!startsWith", "!endsWith", "!contains"}
#: Criteria in one expression, nested ones included: each is a subquery of OHDSI's SQL.
MAX_CIRCE_CRITERIA = 500


@cache
def _fields(kind: str) -> tuple[type, frozenset[str]]:
    """OHDSI's model of a criteria type, and the keys it reads."""
    from circe.cohortdefinition import criteria

    model = getattr(criteria, kind)
    keys: set[str] = set()
    for field in model.model_fields.values():
        alias = field.validation_alias
        keys.update(getattr(alias, "choices", None) or [alias])
        keys.update([field.alias, field.serialization_alias])
    return model, frozenset(k for k in keys if isinstance(k, str))


def _check_fields(kind: str, body: dict[str, Any], where: str) -> None:
    """Refuse a field OHDSI's parser would drop: unknown to the type, or of the wrong type
    (it reads such a criterion as one without that condition, widening the cohort)."""
    from pydantic import ValidationError

    model, keys = _fields(kind)
    for key, value in body.items():
        if key not in keys:
            raise UnsupportedCirce(f"{where}.{kind}: {key!r} is not a field of a {kind} criterion")
        if isinstance(value, dict) and "Op" in value:
            ops = TEXT_OPS if "Text" in value else RANGE_OPS
            if value["Op"] not in ops:
                raise UnsupportedCirce(
                    f"{where}.{kind}.{key}.Op {value['Op']!r} is not one of {sorted(ops)}"
                )
    try:
        model.model_validate({k: v for k, v in body.items() if k != "CorrelatedCriteria"})
    except ValidationError as exc:
        error = exc.errors()[0]
        place = ".".join(str(part) for part in error["loc"] if part not in ("int", "float"))
        raise UnsupportedCirce(f"{where}.{kind}.{place}: {error['msg']}") from None


class _Walk:
    """Every criterion in an expression, checked where Circe puts one: one known type each,
    its concept set defined. (OHDSI's parser turns a criterion it cannot read into one of
    "any record" of its type, which would widen the cohort silently.)"""

    def __init__(self, codesets: set[int]) -> None:
        self.codesets = codesets
        self.types: set[str] = set()
        self.count = 0

    def criterion(self, node: Any, where: str) -> None:
        if not isinstance(node, dict) or len(node) != 1:
            raise UnsupportedCirce(f"{where} is not one Circe criterion ({{TYPE: {{...}}}})")
        [(kind, body)] = node.items()
        if kind in KNOWN_ELSEWHERE:
            raise UnsupportedCirce(
                f"Circe criteria type {kind!r} is not supported (see docs/cohorts.md)"
            )
        if kind not in CRITERIA_TABLES:
            raise UnsupportedCirce(f"{where}: {kind!r} is not a Circe criteria type")
        if not isinstance(body, dict):
            raise UnsupportedCirce(f"{where}.{kind} is not an object")
        codeset = body.get("CodesetId")
        if codeset is not None and (type(codeset) is not int or codeset not in self.codesets):
            raise UnsupportedCirce(
                f"{where}.{kind}.CodesetId {codeset!r} names no concept set of the expression"
            )
        self.count += 1
        if self.count > MAX_CIRCE_CRITERIA:
            raise UnsupportedCirce(f"the expression holds over {MAX_CIRCE_CRITERIA} criteria")
        _check_fields(kind, body, where)
        self.types.add(kind)
        if body.get("CorrelatedCriteria") is not None:
            self.group(body["CorrelatedCriteria"], f"{where}.{kind}.CorrelatedCriteria")

    def group(self, node: Any, where: str) -> None:
        if not isinstance(node, dict):
            raise UnsupportedCirce(f"{where} is not a Circe criteria group")
        if unknown := sorted(set(node) - GROUP_KEYS):
            raise UnsupportedCirce(f"{where}: {unknown[0]!r} is not part of a Circe criteria group")
        if node.get("Type", "ALL") not in GROUP_TYPES:
            raise UnsupportedCirce(
                f"{where}.Type {node['Type']!r} is not one of {sorted(GROUP_TYPES)}"
            )
        for i, item in enumerate(_listed(node, "CriteriaList", where)):
            if not isinstance(item, dict) or "Criteria" not in item:
                raise UnsupportedCirce(f"{where}.CriteriaList[{i}] has no Criteria")
            occurrence = item.get("Occurrence") or {}
            if (
                not isinstance(occurrence, dict)
                or occurrence.get("Type", 2) not in OCCURRENCE_TYPES
            ):
                raise UnsupportedCirce(
                    f"{where}.CriteriaList[{i}].Occurrence.Type is not 0, 1 or 2 "
                    "(exactly, at most, at least)"
                )
            self.criterion(item["Criteria"], f"{where}.CriteriaList[{i}].Criteria")
        for i, item in enumerate(_listed(node, "DemographicCriteriaList", where)):
            if not isinstance(item, dict):
                raise UnsupportedCirce(f"{where}.DemographicCriteriaList[{i}] is not an object")
            _check_fields("DemographicCriteria", item, f"{where}.DemographicCriteriaList[{i}]")
        for i, inner in enumerate(_listed(node, "Groups", where)):
            self.group(inner, f"{where}.Groups[{i}]")


def _listed(node: dict[str, Any], key: str, where: str) -> list[Any]:
    found = node.get(key) or []
    if not isinstance(found, list):
        raise UnsupportedCirce(f"{where}.{key} is not a list")
    return found


def _codesets(expression: dict[str, Any]) -> set[int]:
    sets = _listed(expression, "ConceptSets", "expression")
    ids, items = set(), 0
    for i, one in enumerate(sets):
        if not isinstance(one, dict) or type(one.get("id")) is not int:
            raise UnsupportedCirce(f"ConceptSets[{i}] has no whole-number id")
        ids.add(one["id"])
        items += len((one.get("expression") or {}).get("items") or [])
    if items > MAX_CONCEPTS:
        raise UnsupportedCirce(f"the concept sets list {items} concepts, over {MAX_CONCEPTS}")
    return ids


def criteria_types(expression: dict[str, Any]) -> set[str]:
    """Every criteria type the expression uses; UnsupportedCirce where a criterion is not one."""
    walk = _Walk(_codesets(expression))
    primary = expression.get("PrimaryCriteria")
    if not isinstance(primary, dict):
        raise UnsupportedCirce("Circe expression has no PrimaryCriteria object")
    for i, node in enumerate(_listed(primary, "CriteriaList", "PrimaryCriteria")):
        walk.criterion(node, f"PrimaryCriteria.CriteriaList[{i}]")
    if expression.get("AdditionalCriteria") is not None:
        walk.group(expression["AdditionalCriteria"], "AdditionalCriteria")
    rules = _listed(expression, "InclusionRules", "expression")
    if len(rules) > MAX_CRITERIA:
        raise UnsupportedCirce(f"{len(rules)} inclusion rules, over {MAX_CRITERIA}")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise UnsupportedCirce(f"InclusionRules[{i}] is not an object")
        walk.group(rule.get("expression") or {}, f"InclusionRules[{i}].expression")
    for i, node in enumerate(_listed(expression, "CensoringCriteria", "expression")):
        walk.criterion(node, f"CensoringCriteria[{i}]")
    return walk.types


def check(expression: dict[str, Any]) -> set[str]:
    """Raise UnsupportedCirce for the first element FLIP does not run; return the tables read."""
    for key in expression:
        if key not in TOP_LEVEL:
            raise UnsupportedCirce(f"Circe element {key!r} is not supported (see docs/cohorts.md)")
    types = criteria_types(expression)
    if not types:
        raise UnsupportedCirce("Circe expression has no PrimaryCriteria.CriteriaList")
    end = expression.get("EndStrategy") or {}
    for key in end:
        if key != "DateOffset":
            raise UnsupportedCirce(
                f"Circe end strategy {key!r} is not supported (see docs/cohorts.md)"
            )
    return {"person", "observation_period"} | {CRITERIA_TABLES[t] for t in types}
