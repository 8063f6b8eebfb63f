"""Compile a cohort definition to one SQL query over the CDM (SQLAlchemy Core)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Select, and_, exists, func, or_, select

from flip.data.cdm import schema
from flip.data.cdm.rows import GENDERS
from flip.data.cdm.store import Store
from flip.data.cohort.definition import CohortDefinition, Criterion


def _has(criterion: Criterion):
    table = schema.metadata.tables[criterion.table]
    columns = schema.EVENT_COLUMNS[criterion.table]
    concept_col, date_col, value_col = columns.concept, columns.date, columns.value
    wanted = criterion.concept_ids
    if criterion.descendants:
        ancestry = schema.concept_ancestor
        below = select(ancestry.c.descendant_concept_id).where(
            ancestry.c.ancestor_concept_id.in_(wanted)
        )
        concept_match = or_(table.c[concept_col].in_(wanted), table.c[concept_col].in_(below))
    else:
        concept_match = table.c[concept_col].in_(wanted)
    clauses = [table.c.person_id == schema.person.c.person_id, concept_match]
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
