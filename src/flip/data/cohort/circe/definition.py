"""A Circe cohort (OHDSI ATLAS's JSON) as FLIP carries it, and the loader that tells it
from FLIP's own cohort JSON by its keys."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, model_validator

from flip.bounds import MAX_MAGNITUDE, describe, json_problems
from flip.data.cohort.circe.supported import check
from flip.data.cohort.definition import CohortDefinition

#: Keys that only a Circe expression has at its top level.
CIRCE_KEYS = {"ConceptSets", "PrimaryCriteria"}


class CirceDefinition(BaseModel):
    """A Circe cohort expression, checked against what FLIP runs (docs/cohorts.md)."""

    name: str = Field(min_length=1, max_length=200)
    expression: dict[str, Any]
    histograms: list[str] = Field(default_factory=list, max_length=0)

    @model_validator(mode="before")
    @classmethod
    def _within_bounds(cls, data: Any) -> Any:
        if problems := json_problems(data, max_magnitude=MAX_MAGNITUDE):
            raise ValueError(describe(problems))
        return data

    @model_validator(mode="after")
    def _supported(self) -> CirceDefinition:
        check(self.expression)
        return self

    def tables(self) -> set[str]:
        """The CDM tables the cohort reads."""
        return check(self.expression)

    def rule_names(self) -> list[str]:
        """The inclusion rules' names, in order."""
        rules = self.expression.get("InclusionRules") or []
        return [r.get("name") or f"rule {i + 1}" for i, r in enumerate(rules)]


def is_circe(data: Any) -> bool:
    """Whether decoded JSON is a Circe expression (or FLIP's wrapper of one)."""
    return isinstance(data, dict) and (
        data.keys() >= CIRCE_KEYS or isinstance(data.get("expression"), dict)
    )


def load_definition(data: Any, name: str = "circe cohort") -> CohortDefinition | CirceDefinition:
    """A cohort definition from decoded JSON or JSON text: Circe by its keys, else FLIP's own.

    UnsupportedCirce names the first Circe element FLIP does not run."""
    if isinstance(data, str | bytes):
        data = json.loads(data)
    if not is_circe(data):
        return CohortDefinition.model_validate(data)
    check(data.get("expression", data))
    if "expression" in data:
        return CirceDefinition.model_validate(data)
    title = data.get("Title") or name
    return CirceDefinition(name=str(title)[:200], expression=data)
