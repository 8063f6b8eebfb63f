"""Store-level data-quality checks in the style of the OHDSI Data Quality Dashboard."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import ColumnElement, Connection, and_, exists, func, select, true

from flip.data.cdm import schema
from flip.data.cdm.store import Store

#: Event tables whose concept columns and dates the checks look at.
CHECKED_TABLES = (
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "device_exposure",
    "specimen",
    "visit_occurrence",
)


@dataclass(frozen=True)
class Check:
    """One check's outcome: how many rows failed out of how many it looked at."""

    name: str
    category: str
    table: str
    failed: int
    total: int
    threshold: float
    description: str

    @property
    def share_failed(self) -> float:
        """Failed rows as a share of rows checked (0 when nothing was checked)."""
        return self.failed / self.total if self.total else 0.0

    @property
    def status(self) -> str:
        """PASS when the failed share is within the threshold, else FAIL."""
        return "PASS" if self.share_failed <= self.threshold else "FAIL"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, with the derived status."""
        return asdict(self) | {"status": self.status, "share_failed": round(self.share_failed, 4)}


def _count(conn: Connection, query) -> int:
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def kept(person_id, excluded: frozenset[int]) -> ColumnElement[bool]:
    """The rows whose `person_id` column is not one of the `excluded` persons."""
    return person_id.not_in(sorted(excluded)) if excluded else true()


def run_checks(store: Store, excluded: frozenset[int] = frozenset()) -> list[Check]:
    """Every check on the store's current contents, the `excluded` persons' rows left out."""
    s = schema
    checks: list[Check] = []
    in_person = kept(s.person.c.person_id, excluded)
    with store.connect() as conn:
        persons = _count(conn, select(s.person.c.person_id).where(in_person))
        in_death = kept(s.death.c.person_id, excluded)
        deaths = _count(conn, select(s.death.c.person_id).where(in_death))
        before_birth = _count(
            conn,
            select(s.death.c.person_id)
            .join(s.person, s.person.c.person_id == s.death.c.person_id)
            .where(func.extract("year", s.death.c.death_date) < s.person.c.year_of_birth)
            .where(in_death),
        )
        checks.append(
            Check(
                "plausibility.death_before_birth",
                "plausibility",
                "death",
                before_birth,
                deaths,
                0.0,
                "death date in a year before the year of birth",
            )
        )
        checks.append(
            Check(
                "completeness.gender",
                "completeness",
                "person",
                _count(
                    conn,
                    select(s.person.c.person_id).where(
                        s.person.c.gender_concept_id == 0, in_person
                    ),
                ),
                persons,
                0.05,
                "persons whose gender maps to no concept",
            )
        )
        checks.append(
            Check(
                "conformance.observation_period",
                "conformance",
                "person",
                _count(
                    conn,
                    select(s.person.c.person_id).where(
                        ~exists().where(s.observation_period.c.person_id == s.person.c.person_id),
                        in_person,
                    ),
                ),
                persons,
                0.0,
                "persons with no observation period",
            )
        )
        for name in CHECKED_TABLES:
            checks.extend(_table_checks(conn, name, excluded))
    return checks


def _table_checks(conn: Connection, name: str, excluded: frozenset[int]) -> list[Check]:
    s = schema
    table = s.metadata.tables[name]
    columns = s.EVENT_COLUMNS[name]
    concept = table.c[columns.concept]
    rows = kept(table.c.person_id, excluded)
    total = _count(conn, select(concept).where(rows))
    if total == 0:
        return []
    unknown = _count(
        conn,
        select(concept).where(
            concept != 0, ~exists().where(s.concept.c.concept_id == concept), rows
        ),
    )
    unmapped = _count(conn, select(concept).where(concept == 0, rows))
    after_death = _count(
        conn,
        select(concept)
        .join(s.death, s.death.c.person_id == table.c.person_id)
        .where(and_(table.c[columns.date] > s.death.c.death_date), rows),
    )
    checks = [
        Check(
            f"conformance.concept_id_in_vocabulary.{name}",
            "conformance",
            name,
            unknown,
            total,
            0.0,
            "concept ids that are not in the concept table",
        ),
        Check(
            f"completeness.mapped.{name}",
            "completeness",
            name,
            unmapped + unknown,
            total,
            # one concept id the vocabulary does not know fails the check outright
            0.0 if unknown else 0.05,
            "rows whose source code maps to no standard concept (concept_id 0), "
            "or to a concept id that is not in the concept table",
        ),
        Check(
            f"plausibility.after_death.{name}",
            "plausibility",
            name,
            after_death,
            total,
            0.01,
            "events dated after the person's death",
        ),
    ]
    if "visit_occurrence_id" in table.c and name != "visit_occurrence":
        visit = table.c.visit_occurrence_id
        dangling = _count(
            conn,
            select(visit).where(
                visit.is_not(None),
                ~exists().where(s.visit_occurrence.c.visit_occurrence_id == visit),
            ),
        )
        checks.append(
            Check(
                f"conformance.visit_exists.{name}",
                "conformance",
                name,
                dangling,
                total,
                0.0,
                "rows whose visit_occurrence_id names no stored visit",
            )
        )
    return checks
