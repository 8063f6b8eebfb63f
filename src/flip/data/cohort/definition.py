"""A cohort definition: who is in, as JSON the hub can carry and every site can compile."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip.bounds import MAX_CONCEPTS, MAX_CRITERIA, MAX_MAGNITUDE, describe, json_problems

Table = Literal[
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "visit_occurrence",
    "image_occurrence",
    "note",
    "note_nlp",
]


class Criterion(BaseModel):
    """A person has (or, in exclusions, has not) a record of one of these concepts.

    With `descendants` (the default) a concept stands for itself and every concept
    below it in the vocabulary's hierarchy (concept_ancestor). For image_occurrence
    the concepts are imaging modalities. For note, a person has a note that mentions
    one of the concepts: a NOTE_NLP row for it (when the site runs NLP), or the
    concept's name or a synonym in the note's text (case-insensitive). For note_nlp, a
    person has a note whose NOTE_NLP row affirms the concept (term_exists 'Y': not negated,
    not uncertain, not about a relative), as `flip site notes process` writes them.
    """

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    table: Table
    concept_ids: list[int] = Field(min_length=1, max_length=MAX_CONCEPTS)
    descendants: bool = True
    value_min: float | None = Field(None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    value_max: float | None = Field(None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _values_need_numbers(self) -> Criterion:
        if (self.value_min is not None or self.value_max is not None) and self.table not in (
            "measurement",
            "observation",
        ):
            raise ValueError("value_min/value_max apply only to measurement or observation")
        return self


class CohortDefinition(BaseModel):
    """Inclusion and exclusion criteria (at most MAX_CRITERIA in all), an age range (age
    today) and sexes. A key it does not know is refused: a misspelt `include` or `age_min`
    must not count everyone."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    include: list[Criterion] = Field(default_factory=list, max_length=MAX_CRITERIA)
    exclude: list[Criterion] = Field(default_factory=list, max_length=MAX_CRITERIA)
    age_min: int | None = Field(None, ge=0, le=130)
    age_max: int | None = Field(None, ge=0, le=130)
    sex: list[Literal["female", "male"]] = Field(default_factory=list)
    histograms: list[Literal["age", "sex"]] = Field(
        default_factory=list,
        description="Coarse breakdowns released with the count: age in ten-year bins, sex.",
    )

    @model_validator(mode="before")
    @classmethod
    def _within_bounds(cls, data: Any) -> Any:
        if problems := json_problems(data, max_magnitude=MAX_MAGNITUDE):
            raise ValueError(describe(problems))
        return data

    @model_validator(mode="after")
    def _few_enough_criteria(self) -> CohortDefinition:
        if len(self.include) + len(self.exclude) > MAX_CRITERIA:
            raise ValueError(
                f"{len(self.include) + len(self.exclude)} criteria: a site counts at most "
                f"{MAX_CRITERIA} (inclusions and exclusions together)"
            )
        return self

    def tables(self) -> set[str]:
        """The CDM tables the cohort reads."""
        return {"person"} | {c.table for c in [*self.include, *self.exclude]}
