"""A Circe cohort (OHDSI ATLAS's JSON) as FLIP carries it, and the loader that tells it
from FLIP's own cohort JSON by its keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from flip.bounds import MAX_DEPTH, MAX_MAGNITUDE, describe, json_problems
from flip.data.cohort.circe.supported import UnsupportedCirce, check
from flip.data.cohort.definition import CohortDefinition

#: Keys that only a Circe expression has at its top level.
CIRCE_KEYS = {"ConceptSets", "PrimaryCriteria"}
#: The longest cohort JSON text read: ATLAS's export of 5,000 concepts is under 3 MB.
MAX_CIRCE_BYTES = 4_000_000


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

    UnsupportedCirce names the first Circe element FLIP does not run, or says the JSON is too
    long or nests too deep (before it is parsed or walked, so neither can exhaust the site)."""
    if isinstance(data, str | bytes):
        if len(data) > MAX_CIRCE_BYTES:
            raise UnsupportedCirce(
                f"the cohort JSON is {len(data):,} characters long, over {MAX_CIRCE_BYTES:,}"
            )
        try:
            data = json.loads(data)
        except RecursionError:
            raise UnsupportedCirce(
                f"the cohort JSON nests deeper than {MAX_DEPTH} levels"
            ) from None
    if not is_circe(data):
        return CohortDefinition.model_validate(data)
    if problems := json_problems(data, max_magnitude=MAX_MAGNITUDE):
        raise UnsupportedCirce(describe(problems))
    check(data.get("expression", data))
    if "expression" in data:
        return CirceDefinition.model_validate(data)
    title = data.get("Title") or name
    return CirceDefinition(name=str(title)[:200], expression=data)


def load_definition_file(path: Path) -> CohortDefinition | CirceDefinition:
    """The cohort definition in a JSON file (load_definition); ValueError naming the file
    when it is not UTF-8 JSON or not a valid definition."""
    from pydantic import ValidationError

    from flip.problems import first_problem, read_text

    try:
        return load_definition(read_text(path), name=path.stem)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except ValidationError as exc:
        raise ValueError(f"{path}: {first_problem(exc)}") from None
