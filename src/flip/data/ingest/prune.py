"""Prune: remove what a source system no longer holds, after a full re-export of it.

Opt-in (`--prune`). After a run completes, every record an earlier run of the same source
system loaded whose key the run did not read (loaded, unchanged, quarantined or skipped all
count as read) loses its rows and their provenance, in one transaction. A person another
source system's rows still refer to is kept, counted under PERSON_KEPT. A run that read
nothing prunes nothing: an empty or misnamed export never empties the store. When the
source system was not named but taken from a folder's name (two hospitals' `export`
folders share `fhir:export`), only records last loaded from the same location are
removed; the others are kept, counted under OTHER_LOCATION.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, exists, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store, values_in
from flip.data.ingest import discharges
from flip.data.ingest.report import IngestReport
from flip.data.ingest.write import (
    delete_row,
    rebuild_observation_periods,
    remove_withdrawn_persons,
)

#: The warning counted for a person pruned from this source whom other rows still refer to.
PERSON_KEPT = "prune.person_still_referenced"

#: The warning counted, per keyless quarantined record, when a run does not prune for them.
PRUNE_REFUSED = "prune.refused.unkeyed_quarantine"

#: The warning counted, per folder or file that could not be read, when a run does not prune.
PRUNE_REFUSED_UNREAD = "prune.refused.unread"

#: The warning counted per record kept because a run from another location loaded it.
OTHER_LOCATION = "prune.kept.other_location"

#: The warning counted per kept discharge (HL7 A03 waiting for its admission: see
#: discharges) a full re-export no longer holds: it is dropped, never applied.
DISCHARGE_DROPPED = "prune.kept_discharge_dropped"

#: Tables whose rows belong to a person and go with them (derived or one per person).
_OF_PERSON = ("death", "observation_period")


def prune(
    store: Store,
    system: str,
    seen: set[str],
    report: IngestReport,
    derive_periods: bool,
    location: str | None = None,
) -> None:
    """Remove the rows of `system`'s records whose keys are not in `seen` (with `location`,
    only those last loaded by a run that read it); count them in `report.pruned` (records)
    and `report.pruned_rows` (rows per table)."""
    if report.read == 0:
        return
    source, run = schema.source_record, schema.ingest_run
    with store.begin() as conn:
        stored = conn.execute(
            select(
                source.c.record_key,
                source.c.cdm_table,
                source.c.cdm_id,
                run.c.source_uri,
                source.c.role,
            )
            .outerjoin(run, run.c.ingest_run_id == source.c.ingest_run_id)
            .where(source.c.source_system == system)
        ).all()
        gone: dict[str, list[tuple[str, int]]] = {}
        elsewhere: set[str] = set()
        confirmed: set[str] = set()
        for key, table, cdm_id, uri, role in stored:
            if key in seen or role in (schema.MERGED, schema.MERGES):
                continue  # a retired identifier or a merge owns no row: it stays
            if role == schema.CONFIRMS:
                if location is None or uri == location:
                    confirmed.add(key)
                continue
            if location is not None and uri != location:
                elsewhere.add(key)
            else:
                gone.setdefault(key, []).append((table, cdm_id))
        if elsewhere:  # a key also loaded from this location is kept too
            report.warnings[OTHER_LOCATION] += len(elsewhere)
            for key in elsewhere & gone.keys():
                del gone[key]
        _unconfirm(conn, system, confirmed)
        if not gone:
            return
        people = {key for key, rows in gone.items() if any(t == "person" for t, _ in rows)}
        touched: set[int] = set()
        for key in gone.keys() - people:
            touched.update(_remove(conn, gone[key], report))
        for key in people:
            [person_id] = [cdm_id for table, cdm_id in gone[key] if table == "person"]
            if _still_referenced(conn, person_id):
                report.warnings[PERSON_KEPT] += 1
                continue
            _remove(conn, gone[key], report)
            for name in _OF_PERSON:
                table = schema.metadata.tables[name]
                conn.execute(delete(table).where(table.c.person_id == person_id))
            touched.discard(person_id)
            report.pruned += 1
        report.pruned += len(gone) - len(people)
        remove_withdrawn_persons(conn, system, report)
        if derive_periods and touched:
            rebuild_observation_periods(conn, touched)


def prune_kept_discharges(
    store: Store, system: str, seen: set[str], report: IngestReport, location: str | None
) -> None:
    """Before a pruning run ends the kept discharges its admissions fit, drop those the
    re-export no longer holds (counted as DISCHARGE_DROPPED)."""
    with store.begin() as conn:
        dropped = discharges.forget_unseen(conn, system, seen, location)
    if dropped:
        report.warnings[DISCHARGE_DROPPED] += dropped


def _unconfirm(conn: Connection, system: str, keys: set[str]) -> None:
    """Remove the provenance of `system`'s records that confirmed another source's row and
    that the export no longer holds (they had no rows of their own)."""
    if not keys:
        return
    source = schema.source_record
    with values_in(conn, source.c.record_key, sorted(keys)) as wanted:
        conn.execute(
            delete(source)
            .where(source.c.source_system == system, source.c.role == schema.CONFIRMS)
            .where(wanted)
        )


def _remove(conn: Connection, rows: list[tuple[str, int]], report: IngestReport) -> set[int]:
    """Delete a record's rows with their provenance; return the persons they belonged to."""
    persons = set()
    for table_name, cdm_id in rows:
        table = schema.metadata.tables[table_name]
        if "person_id" in table.c and table_name != "person":
            primary = next(iter(table.primary_key.columns))
            found = conn.execute(select(table.c.person_id).where(primary == cdm_id)).scalar()
            if found:
                persons.add(found)
        delete_row(conn, table_name, cdm_id)
        report.pruned_rows[table_name] += 1
    return persons


def _still_referenced(conn: Connection, person_id: int) -> bool:
    """Whether any row (other than the person's own death and observation periods) still
    names the person."""
    for name in schema.CLINICAL_TABLES:
        table = schema.metadata.tables[name]
        if name in ("person", *_OF_PERSON) or "person_id" not in table.c:
            continue
        with values_in(conn, table.c.person_id, [person_id]) as mine:
            if conn.execute(select(exists().where(mine))).scalar():
                return True
    return False
