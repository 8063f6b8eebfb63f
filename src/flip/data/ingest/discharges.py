"""Discharges that named no visit and fitted no open visit, kept until an admission.

An HL7 A03 without PV1-19 ends the open visit of its patient that it fits (matching, `_ended`:
its PV1-44, when given, is the visit's start; it does not end before the visit began).
Read before that visit's admission (a feed out of order, or a folder whose files sort so),
it waits in table pending_discharge, by key, and ends the visit once an admission it fits
is read, as it would have had it come after: the outcome does not depend on the order of
reading.

An HL7 A13 (cancel discharge) without PV1-19 is kept here too (kind `cancel`), for good:
a discharge naming no visit that it cancels (matching, `_cancels`: sent no later than it, of
the same admission when both give one), read in a later run, is dropped when read. Once it
cancelled one, it is kept as of that discharge's admission, or (kind `spent`) cancels
nothing more; read again, it changes nothing.

A discharge giving no admission time that ended a visit (waiting first or not) stays too
(kind `ended`): an admission read in a later run that it fits and that began after that
visit takes it over, as it would have had both been read before it (matching, `_moved`):
that visit opens again. Once no stored visit has its content any more (the stay it ended
was cancelled, or an A13 opened it again), it can end nothing: it is forgotten when its
patient's kept records are next read (matching, `_still_ends`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import date, datetime

from sqlalchemy import Connection, delete, select, update

from flip.data.cdm import schema
from flip.data.cdm.store import bulk_insert, values_in
from flip.data.ingest.clean import scrub_text
from flip.data.sources.records import SourceVisit

PENDING = schema.pending_discharge

#: pending_discharge.kind of a discharge that waits, of a kept cancel-discharge, and of one
#: spent on a discharge that gave no admission time (it cancels nothing more).
DISCHARGE, CANCEL, SPENT = "discharge", "cancel", "spent"
#: pending_discharge.kind of a discharge giving no admission time that ended a visit: a
#: later admission it fits may take it over.
ENDED = "ended"


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _moment(text: str | None) -> date | None:
    """A time as stored: a date stays a date, a date and time a datetime."""
    if text is None:
        return None
    return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)


def remember(
    conn: Connection,
    system: str,
    visits: Iterable[SourceVisit],
    run_id: int,
    spent: Collection[str] = (),
    ended: Collection[str] = (),
) -> None:
    """Keep discharges that wait for their visit (those of `ended` as ended), and
    cancel-discharges (SourceVisit.cancels; those of `spent` as spent); a record kept
    before under the same key is replaced, and so is one earlier in `visits`."""
    rows = {
        scrub_text(v.key): {
            "source_system": system,
            "record_key": scrub_text(v.key),
            "person_key": scrub_text(v.person_key),
            "visit_start": _iso(v.start),
            "admitted": int(v.admitted),
            "visit_end": _iso(v.end),
            "source_value": scrub_text(v.source_value)[:50],
            "location": scrub_text(v.location),
            "raw": v.raw,
            "source_version": v.version,
            "ingest_run_id": run_id,
            "kind": _kind(v, spent, ended),
        }
        for v in visits
    }
    if not rows:
        return
    forget(conn, system, rows)
    bulk_insert(conn, PENDING, list(rows.values()))


def _kind(visit: SourceVisit, spent: Collection[str], ended: Collection[str]) -> str:
    """The kind `visit` is kept as (see remember)."""
    if visit.cancels:
        return SPENT if visit.key in spent else CANCEL
    return ENDED if visit.key in ended else DISCHARGE


def forget(conn: Connection, system: str, keys: Iterable[str]) -> None:
    """Drop the kept records of `keys` (discharges applied to their visit, or kept anew)."""
    wanted = sorted(set(keys))
    if not wanted:
        return
    with values_in(conn, PENDING.c.record_key, wanted) as found:
        conn.execute(delete(PENDING).where(PENDING.c.source_system == system, found))


def adopt(conn: Connection, system: str, old_key: str, person_key: str) -> None:
    """File the discharges kept under a patient merged into another (`old_key`, retired)
    under the survivor `person_key`: they wait for the survivor's admissions."""
    found = (PENDING.c.source_system == system, PENDING.c.person_key == scrub_text(old_key))
    conn.execute(update(PENDING).where(*found).values(person_key=scrub_text(person_key)))


def kept_from(conn: Connection, system: str, location: str | None) -> set[str]:
    """The keys of the records `system` keeps (with `location`, those kept by a run that
    read it): what a full re-export of it (prune) holds again or drops."""
    run = schema.ingest_run
    query = (
        select(PENDING.c.record_key, run.c.source_uri)
        .outerjoin(run, run.c.ingest_run_id == PENDING.c.ingest_run_id)
        .where(PENDING.c.source_system == system)
    )
    return {key for key, uri in conn.execute(query) if location is None or uri == location}


def reopened(
    conn: Connection, system: str, location: str | None, hashed: Callable[[bytes], str]
) -> set[str]:
    """The keys of `system`'s stored visits that its kept cancel-discharges (with
    `location`, those kept by a run that read it) opened again: their content is the
    cancel-discharge's (`hashed`: a record's content hash from its raw bytes)."""
    run = schema.ingest_run
    query = (
        select(PENDING.c.raw, run.c.source_uri)
        .outerjoin(run, run.c.ingest_run_id == PENDING.c.ingest_run_id)
        .where(PENDING.c.source_system == system, PENDING.c.kind.in_((CANCEL, SPENT)))
    )
    digests = sorted(
        {hashed(raw or b"") for raw, uri in conn.execute(query) if location in (None, uri)}
    )
    if not digests:
        return set()
    source = schema.source_record
    with values_in(conn, source.c.content_hash, digests) as wanted:
        found = select(source.c.record_key).where(
            source.c.source_system == system,
            source.c.cdm_table == "visit_occurrence",
            source.c.role == schema.PRODUCED,
            wanted,
        )
        return set(conn.execute(found).scalars())


def forget_unseen(conn: Connection, system: str, seen: set[str], location: str | None) -> int:
    """Drop the kept discharges of `system` whose keys a full re-export did not hold (with
    `location`, only those kept by a run that read it); return how many went."""
    gone = kept_from(conn, system, location) - seen
    forget(conn, system, gone)
    return len(gone)


def waiting(
    conn: Connection, system: str, person_keys: Iterable[str]
) -> list[tuple[str, SourceVisit]]:
    """The discharges that wait for a visit of one of `person_keys`, and their kept
    cancel-discharges, each with its kind."""
    wanted = sorted(set(person_keys))
    if not wanted:
        return []
    with values_in(conn, PENDING.c.person_key, wanted) as found:
        rows = conn.execute(select(PENDING).where(PENDING.c.source_system == system, found)).all()
    return [
        (
            row.kind,
            SourceVisit(
                key=row.record_key,
                person_key=row.person_key,
                start=_moment(row.visit_start),
                end=_moment(row.visit_end),
                source_value=row.source_value,
                location=row.location,
                raw=row.raw or b"",
                version=row.source_version,
                open_visit=True,
                admitted=bool(row.admitted),
                cancels=row.kind in (CANCEL, SPENT),
            ),
        )
        for row in rows
    ]
