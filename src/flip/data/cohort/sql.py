"""Compile a cohort definition to one SQL query over the CDM (SQLAlchemy Core)."""

from __future__ import annotations

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
from flip.data.cohort.definition import CohortDefinition, Criterion


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


def _has(criterion: Criterion):
    if criterion.table == "note":
        return _mentioned(criterion)
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


def count_cohort(store: Store, definition: CohortDefinition) -> int:
    """How many persons in the store meet the definition (unsuppressed: it stays at the site)."""
    inner = person_ids(definition).subquery()
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def cohort_histograms(store: Store, definition: CohortDefinition) -> dict[str, dict[str, int]]:
    """Unsuppressed counts of the cohort per bin of each breakdown the definition asks for."""
    inner = person_ids(definition).subquery()
    person = schema.person
    this_year = datetime.now(UTC).year
    decade = (this_year - person.c.year_of_birth) // 10 * 10
    keys = {"age": decade, "sex": person.c.gender_concept_id}
    out: dict[str, dict[str, int]] = {}
    with store.connect() as conn:
        for by in definition.histograms:
            key = keys[by].label("bin")
            rows = conn.execute(
                select(key, func.count())
                .select_from(person.join(inner, inner.c.person_id == person.c.person_id))
                .group_by(key)
            ).all()
            out[by] = {_bin_name(by, value): n for value, n in rows}
    return out


def _bin_name(by: str, value: int | None) -> str:
    if by == "age" and value is not None:
        low = int(value)
        return f"{low}-{low + 9}"
    return {concept: name for name, concept in GENDERS.items()}.get(value, "other or unknown")
