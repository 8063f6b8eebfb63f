"""Compile a cohort definition to one SQL query over the CDM (SQLAlchemy Core)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    or_,
    select,
    union,
)

from flip.data.cdm import schema
from flip.data.cdm.rows import GENDERS
from flip.data.cdm.store import Store
from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.cohort.circe.run import run_circe
from flip.data.cohort.definition import CohortDefinition, Criterion
from flip.data.cohort.optout import opted_out


def _matches(column: ColumnElement, criterion: Criterion) -> ColumnElement:
    """`column` is one of the criterion's concepts, or below one when it asks for descendants."""
    wanted = criterion.concept_ids
    if not criterion.descendants:
        return column.in_(wanted)
    ancestry = schema.concept_ancestor
    below = select(ancestry.c.descendant_concept_id).where(
        ancestry.c.ancestor_concept_id.in_(wanted)
    )
    return or_(column.in_(wanted), column.in_(below))


def _mentioned(criterion: Criterion):
    """A note of the person that NOTE_NLP links to a concept, or whose text names it."""
    note, nlp, concept, synonym = (
        schema.note,
        schema.note_nlp,
        schema.concept,
        schema.concept_synonym,
    )
    names = union(
        select(func.lower(concept.c.concept_name).label("name")).where(
            _matches(concept.c.concept_id, criterion)
        ),
        select(func.lower(synonym.c.concept_synonym_name)).where(
            _matches(synonym.c.concept_id, criterion)
        ),
    ).subquery()
    by_nlp = exists().where(
        nlp.c.note_id == note.c.note_id, _matches(nlp.c.note_nlp_concept_id, criterion)
    )
    by_text = exists().where(func.lower(note.c.note_text).contains(names.c.name))
    clauses = [note.c.person_id == schema.person.c.person_id, or_(by_nlp, by_text)]
    if criterion.start is not None:
        clauses.append(note.c.note_date >= criterion.start)
    if criterion.end is not None:
        clauses.append(note.c.note_date <= criterion.end)
    return exists().where(and_(*clauses))


def _affirmed(criterion: Criterion):
    """A note of the person whose NOTE_NLP row affirms one of the concepts."""
    note, nlp = schema.note, schema.note_nlp
    clauses = [
        note.c.person_id == schema.person.c.person_id,
        nlp.c.note_id == note.c.note_id,
        nlp.c.term_exists == "Y",
        _matches(nlp.c.note_nlp_concept_id, criterion),
    ]
    if criterion.start is not None:
        clauses.append(note.c.note_date >= criterion.start)
    if criterion.end is not None:
        clauses.append(note.c.note_date <= criterion.end)
    return exists().where(and_(*clauses))


def _has(criterion: Criterion):
    if criterion.table == "note":
        return _mentioned(criterion)
    if criterion.table == "note_nlp":
        return _affirmed(criterion)
    table = schema.metadata.tables[criterion.table]
    columns = schema.EVENT_COLUMNS[criterion.table]
    concept_col, date_col, value_col = columns.concept, columns.date, columns.value
    clauses = [
        table.c.person_id == schema.person.c.person_id,
        _matches(table.c[concept_col], criterion),
    ]
    if criterion.start is not None:
        clauses.append(table.c[date_col] >= criterion.start)
    if criterion.end is not None:
        clauses.append(table.c[date_col] <= criterion.end)
    if value_col and criterion.value_min is not None:
        clauses.append(table.c[value_col] >= criterion.value_min)
    if value_col and criterion.value_max is not None:
        clauses.append(table.c[value_col] <= criterion.value_max)
    return exists().where(and_(*clauses))


def person_ids(definition: CohortDefinition) -> Select:
    """SELECT person_id of everyone who meets the definition."""
    person = schema.person
    query = select(person.c.person_id)
    for criterion in definition.include:
        query = query.where(_has(criterion))
    for criterion in definition.exclude:
        query = query.where(~_has(criterion))
    this_year = datetime.now(UTC).year
    if definition.age_min is not None:
        query = query.where(person.c.year_of_birth <= this_year - definition.age_min)
    if definition.age_max is not None:
        query = query.where(person.c.year_of_birth >= this_year - definition.age_max)
    if definition.sex:
        query = query.where(person.c.gender_concept_id.in_([GENDERS[s] for s in definition.sex]))
    return query


@dataclass(frozen=True)
class Cohort:
    """Who meets a definition, who falls in each bin of each breakdown it asks for, and, for
    a Circe cohort, who is left after its primary criteria and after each inclusion rule."""

    members: frozenset[int]
    cells: dict[str, dict[str, frozenset[int]]]
    steps: list[frozenset[int]] = field(default_factory=list)


def cohort(store: Store, definition: CohortDefinition | CirceDefinition) -> Cohort:
    """The persons who meet the definition, less everyone on the site's opt-out list."""
    if isinstance(definition, CirceDefinition):
        with store.connect() as conn:
            excluded = opted_out(conn)
        found = run_circe(store, definition.expression)
        return Cohort(found.members - excluded, {}, [s - excluded for s in found.steps])
    person = schema.person
    this_year = datetime.now(UTC).year
    query = person_ids(definition).add_columns(person.c.year_of_birth, person.c.gender_concept_id)
    with store.connect() as conn:
        excluded = opted_out(conn)
        rows = [r for r in conn.execute(query) if r[0] not in excluded]
    keys = {"age": lambda born, _: (this_year - born) // 10 * 10, "sex": lambda _, sex: sex}
    cells: dict[str, dict[str, set[int]]] = {}
    for by in definition.histograms:
        bins = cells.setdefault(by, {})
        for pid, born, sex in rows:
            bins.setdefault(_bin_name(by, keys[by](born, sex)), set()).add(pid)
    return Cohort(
        frozenset(r[0] for r in rows),
        {by: {k: frozenset(v) for k, v in bins.items()} for by, bins in cells.items()},
    )


def population(store: Store) -> frozenset[int]:
    """Every person of the store, less everyone on the site's opt-out list."""
    with store.connect() as conn:
        excluded = opted_out(conn)
        return frozenset(conn.execute(select(schema.person.c.person_id)).scalars()) - excluded


def count_cohort(store: Store, definition: CohortDefinition | CirceDefinition) -> int:
    """How many persons in the store meet the definition (unsuppressed: it stays at the site)."""
    return len(cohort(store, definition).members)


def cohort_histograms(store: Store, definition: CohortDefinition) -> dict[str, dict[str, int]]:
    """Unsuppressed counts of the cohort per bin of each breakdown the definition asks for."""
    cells = cohort(store, definition).cells
    return {by: {k: len(v) for k, v in bins.items()} for by, bins in cells.items()}


def _bin_name(by: str, value: int | None) -> str:
    if by == "age" and value is not None:
        low = int(value)
        return f"{low}-{low + 9}"
    return {concept: name for name, concept in GENDERS.items()}.get(value, "other or unknown")
