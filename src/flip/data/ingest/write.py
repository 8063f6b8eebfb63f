"""The write stage of an ingest: commit a batch whole, with provenance and quarantine.

A record's identity is (source system, record key): an unchanged record adds nothing,
a changed one replaces the rows it produced before, and every CDM row is linked to the
record and run that produced it in source_record (role PRODUCED), and to each record of
another source system that names it (a patient known by the site's person identifier:
role CONFIRMS, which owns nothing of the row and is re-written on each run).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import (
    Connection,
    Select,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from flip.data.cdm import schema
from flip.data.cdm.rows import death_row, person_row, stable_id, visit_id
from flip.data.cdm.store import Store, bulk_insert, insert_columns, row_columns, values_in
from flip.data.ingest import discharges
from flip.data.ingest.batch import Batch, admission_version, older, salted
from flip.data.ingest.clean import NUL_REMOVED, scrub_text
from flip.data.ingest.report import (
    OLDER_THAN_STORED,
    SUPERSEDED,
    WITHDRAWN_NOTHING,
    WITHDRAWN_PERSON_KEPT,
    IngestReport,
    restored_on_error,
)
from flip.data.ingest.stale import fail_stale_runs, this_process
from flip.data.sources.records import Rejected, SourceMerge, SourcePerson, part_key

#: Records whose stored parts one query looks for (a prefix test each).
PARTS_PER_QUERY = 50


def _parts_stored(conn: Connection, query: Select, keys: list[str]) -> dict[str, list]:
    """The rows `query` finds of the parts (keys `key#…`: components, a report's contained
    results) of each of `keys`, by key: a few queries, not one per key."""
    record_key = schema.source_record.c.record_key
    parts: dict[str, list] = {}
    for start in range(0, len(keys), PARTS_PER_QUERY):
        chunk = keys[start : start + PARTS_PER_QUERY]
        wanted = set(chunk)
        prefixes = or_(*(record_key.startswith(f"{key}#", autoescape=True) for key in chunk))
        for row in conn.execute(query.where(prefixes)):
            found = row[0]
            at = found.find("#")
            while at != -1:
                if found[:at] in wanted:
                    parts.setdefault(found[:at], []).append(row)
                at = found.find("#", at + 1)
    return parts


class Writer:
    """Opens, writes and closes the ingest runs of one source system in a store."""

    def __init__(
        self,
        store: Store,
        source_system: str,
        derive_periods: bool = True,
        interpretation: str = "",
    ) -> None:
        self.store = store
        self.system = source_system
        self.derive_periods = derive_periods
        #: The reading settings that change what a record means (e.g. "date_order=dmy"):
        #: part of every content hash, so that a record read otherwise is mapped again.
        self.interpretation = interpretation
        #: Quarantine ids written by the current run: a repeat within the run gets the
        #: next occurrence number, so that each rejected record keeps its own row.
        self._quarantine_ids: dict[int, set[int]] = {}
        #: Whether the source system has quarantine rows with a record key (None: unknown).
        self._keyed_quarantine: bool | None = None
        #: Whether the source system has withdrawn patients kept for rows that name them
        #: (role WITHDRAWN; None: unknown).
        self._withdrawn_kept: bool | None = None
        #: Whether the source system has withdrawal rows (None: unknown).
        self._withdrawals: bool | None = None
        #: Whether the store was seen holding provenance of the source system.
        self._provenance = False
        #: The versioned records the current run quarantined: record key -> (quarantine
        #: id, version, rule) each, released when a newer version loads later in the run.
        self._versioned_quarantine: dict[str, list[tuple[int, str, str]]] = {}

    def open_run(self, kind: str, uri: str) -> IngestReport:
        """Record the start of an ingest run, with the process that runs it, after marking
        failed the runs whose process died; return its (empty) report."""
        started = _now()
        report = IngestReport(run_id=stable_id(self.system, uri, started.isoformat()))
        self._versioned_quarantine = {}
        with self.store.begin() as conn:
            fail_stale_runs(conn)
            conn.execute(
                insert(schema.ingest_run).values(
                    ingest_run_id=report.run_id,
                    source_kind=kind,
                    source_uri=uri,
                    source_system=self.system,
                    started_at=started,
                    status="running",
                    **this_process(),
                )
            )
        return report

    def close_run(self, report: IngestReport, status: str) -> None:
        """Record the end of a run with its counters and its per-rule tallies."""
        with self.store.begin() as conn:
            conn.execute(
                update(schema.ingest_run)
                .where(schema.ingest_run.c.ingest_run_id == report.run_id)
                .values(
                    finished_at=_now(),
                    status=status,
                    records_read=report.read,
                    records_loaded=report.loaded,
                    records_unchanged=report.unchanged,
                    records_quarantined=report.quarantined,
                    records_skipped=report.skipped,
                    records_pruned=report.pruned,
                    records_withdrawn=report.withdrawn,
                )
            )
            _write_tallies(conn, report)

    def write(self, batch: Batch, report: IngestReport) -> None:
        """Commit one batch whole: replace changed records, keep unchanged ones, add new
        ones with their provenance, apply merges, and quarantine what was rejected. When
        the transaction fails, the report's counters are left as they were before."""
        ids_before = set(self._quarantine_ids.get(report.run_id, ()))
        versioned_before = {k: list(v) for k, v in self._versioned_quarantine.items()}
        try:
            with restored_on_error(report):
                self._write(batch, report)
        except BaseException:
            self._quarantine_ids[report.run_id] = ids_before
            self._versioned_quarantine = versioned_before
            raise

    def _write(self, batch: Batch, report: IngestReport) -> None:
        if self.interpretation:
            batch.sources = {
                key: (location, salted(digest, self.interpretation))
                for key, (location, digest) in batch.sources.items()
            }
        with self.store.begin() as conn:
            unchanged: set[str] = set()
            # A key an earlier batch of this run wrote: that record is superseded, not this
            # one unchanged (same content) nor loaded a second time (new content).
            again_same = again_new = 0
            # an older version than the one this run stored, or than a stored withdrawal
            stale: set[str] = set()
            older_stored = 0  # an older version than the one an earlier run stored
            changed = False  # whether a stored record's rows were replaced
            stored = self._has_provenance(conn)  # none: its records have no rows to find
            existing = self._existing(conn, batch) if stored else {}
            withdrawn_later = self._withdrawn_later(conn, batch)
            for key, run in withdrawn_later.items():
                stale.add(key)
                older_stored += run != report.run_id
            for key, old in existing.items():
                if key in stale:
                    continue
                earlier = any(run == report.run_id for *_, run, _ in old)
                if key in batch.provisional:
                    old = [(*row[:4], admission_version(row[4])) for row in old]
                newer = [run for *_, run, version in old if older(batch.versions.get(key), version)]
                if newer:
                    stale.add(key)
                    older_stored += report.run_id not in newer
                    continue
                if all(digest == batch.sources[key][1] for _, _, digest, _, _ in old):
                    unchanged.add(key)
                    again_same += earlier
                    continue
                again_new += earlier
                changed = True
                for table, cdm_id, _, run, _ in old:
                    delete_row(conn, table, cdm_id, keep_others=True)
                    if run == report.run_id:
                        report.rows[table] -= 1  # written by this run, now replaced
            if stored:
                self._retire(conn, batch.replaced - batch.sources.keys())
                self._retire_parts(conn, batch, existing, unchanged | stale, report)
            withdrawing = {k: v for k, v in batch.withdrawn.items() if k not in batch.sources}
            layout = batch.layout(self.system, report.run_id, unchanged | stale)
            withdrawn_from = self._withdraw(
                conn,
                withdrawing,
                batch.withdrawn_here,
                batch.amending,
                layout.person_ids,
                report,
                stored=stored,
                rules=batch.withdrawal_rules,
            )
            if layout.nul_rows:
                report.warnings[NUL_REMOVED] += layout.nul_rows
            for name, columns in layout.tables.items():
                insert_columns(conn, schema.metadata.tables[name], columns)
                report.rows[name] += len(next(iter(columns.values())))
            insert_columns(conn, schema.source_record, layout.links)
            if batch.withdrawn or withdrawn_later:
                _unfile_from_gone_visits(conn, layout.tables)
            self._release(conn, layout.links["record_key"], report.run_id)
            self._release_older(conn, layout.links, report)
            self._note_withdrawals(conn, batch, layout.links["record_key"], report)
            self._confirm(conn, batch, report.run_id)
            report.unchanged += len(unchanged) - again_same + batch.merged_before
            superseded = batch.superseded + again_same + again_new + len(stale) - older_stored
            if older_stored:
                report.skipped += older_stored
                report.skipped_rules[OLDER_THAN_STORED] += older_stored
            if superseded:
                report.skipped += superseded
                report.skipped_rules[SUPERSEDED] += superseded
            report.loaded += layout.records - again_new
            for old_id, new_id, merge in batch.merges:
                if merge.restores is not None:
                    self._unlink(conn, merge, merge.restores, old_id, report)
                    continue
                retired = _merge_person(conn, old_id, new_id, report.run_id)
                if retired is None:
                    report.unchanged += 1  # the old person was merged away before
                    continue
                report.loaded += 1
                report.rows["person"] -= retired  # its record, loaded in this run, now merged
                self._trace_merge(conn, merge, new_id, report.run_id)
            self._quarantine(conn, self._unsuperseded(conn, batch, report), report)
            self._keep_discharges(conn, batch, report.run_id)
            # rows that named a withdrawn patient may be gone (withdrawn, or re-filed)
            gone = changed or withdrawing or batch.replaced
            if gone and self._has_withdrawn_kept(conn):
                remove_withdrawn_persons(conn, self.system, report)
            if self.derive_periods:
                rebuild_observation_periods(conn, layout.person_ids | withdrawn_from)

    def _has_provenance(self, conn: Connection) -> bool:
        """Whether the store holds provenance rows of the source system (once seen, not
        looked up again: looking for a record's rows where there are none finds none)."""
        if not self._provenance:
            source = schema.source_record
            mine = select(source.c.role).where(source.c.source_system == self.system)
            self._provenance = conn.execute(mine.limit(1)).first() is not None
        return self._provenance

    def _existing(
        self, conn: Connection, batch: Batch
    ) -> dict[str, list[tuple[str, int, str, int, str | None]]]:
        """(table, id, content hash, ingest run, version) of the rows already stored for each
        record of the batch; a record stored earlier in this run is replaced by the batch's
        (superseded), unless the stored one is a later version."""
        provenance = schema.source_record
        existing: dict[str, list[tuple[str, int, str, int, str | None]]] = {}
        with values_in(conn, provenance.c.record_key, list(batch.sources)) as wanted:
            found = conn.execute(
                select(
                    provenance.c.record_key,
                    provenance.c.cdm_table,
                    provenance.c.cdm_id,
                    provenance.c.content_hash,
                    provenance.c.ingest_run_id,
                    provenance.c.source_version,
                )
                .where(provenance.c.source_system == self.system)
                .where(provenance.c.role.in_(schema.OWNED_ROLES))
                .where(wanted)
            ).all()
        for key, table, cdm_id, digest, run, version in found:
            existing.setdefault(key, []).append((table, cdm_id, digest, run, version))
        return existing

    def _retire(self, conn: Connection, keys: set[str]) -> None:
        """Remove the rows and provenance of earlier records whose place a record of the
        batch takes (`SourceEvent.replaces`)."""
        if not keys:
            return
        provenance = schema.source_record
        with values_in(conn, provenance.c.record_key, sorted(keys)) as wanted:
            found = conn.execute(
                select(provenance.c.cdm_table, provenance.c.cdm_id)
                .where(provenance.c.source_system == self.system)
                .where(provenance.c.role == schema.PRODUCED)
                .where(wanted)
            ).all()
        for table, cdm_id in found:
            delete_row(conn, table, cdm_id)

    def _retire_parts(
        self,
        conn: Connection,
        batch: Batch,
        existing: dict[str, list[tuple[str, int, str, int, str | None]]],
        kept: set[str],
        report: IngestReport,
    ) -> None:
        """Remove the stored records of a resource read as several records (an
        Observation's components) that its version in the batch no longer gives: a
        dropped component, or the value an Observation had before it had components.
        A resource whose batch records are unchanged or stale is left alone."""
        wholes = {
            whole: keys for whole, (_, keys) in batch.wholes.items() if keys and not keys & kept
        }
        if not wholes:
            return
        probes = sorted({probe for whole in wholes for probe in (whole, part_key(whole, 0))})
        provenance = schema.source_record
        mine = (provenance.c.source_system == self.system, provenance.c.role == schema.PRODUCED)
        with values_in(conn, provenance.c.record_key, probes) as wanted:
            found = conn.execute(select(provenance.c.record_key).where(*mine, wanted))
            stored = set(found.scalars())
        for whole, keys in wholes.items():
            changed = any(key in existing for key in keys)
            if not changed and not ({whole, part_key(whole, 0)} - keys) & stored:
                continue
            found = conn.execute(
                select(
                    provenance.c.record_key,
                    provenance.c.cdm_table,
                    provenance.c.cdm_id,
                    provenance.c.ingest_run_id,
                ).where(
                    *mine,
                    (provenance.c.record_key == whole)
                    | provenance.c.record_key.startswith(f"{whole}#", autoescape=True),
                )
            ).all()
            gone: set[str] = set()
            for key, table, cdm_id, run in found:
                if key in batch.sources:
                    continue
                delete_row(conn, table, cdm_id)
                if run == report.run_id:  # loaded by an earlier batch of this run
                    report.rows[table] -= 1
                    gone.add(key)
            report.loaded -= len(gone)
            report.skipped += len(gone)
            report.skipped_rules[SUPERSEDED] += len(gone)

    def _withdraw(
        self,
        conn: Connection,
        keys: dict[str, str | None],
        here: set[str],
        amending: set[str],
        named: set[int],
        report: IngestReport,
        *,
        stored: bool = True,
        rules: dict[str, str] | None = None,
    ) -> set[int]:
        """Remove the rows and provenance of records re-sent as not facts (by key, with the
        withdrawing version: a newer stored version stays; a visit a discharge naming no
        visit ended compares its admission's, see batch.with_admission); count them in
        `report.withdrawn` (one loaded earlier in this run: superseded instead). A patient
        record's person goes with its death row unless a row (stored, or of the batch:
        `named`) or another source system's record still names it: then it is kept
        (WITHDRAWN_PERSON_KEPT). A withdrawal that finds nothing,
        stored or earlier in its batch (`here`), is counted (WITHDRAWN_NOTHING) when its
        record says an earlier version was sent (`amending`), or when the stored version is
        newer (the withdrawal is then counted as superseded when this run stored it, else
        as older than stored, not under its `rules`);
        otherwise it is a record first seen as not a fact, skipped by its rule alone.
        Without `stored` provenance of the source system, nothing is looked up.
        Return the persons touched."""
        if not keys:
            return set()
        provenance = schema.source_record
        columns = (
            provenance.c.record_key,
            provenance.c.cdm_table,
            provenance.c.cdm_id,
            provenance.c.ingest_run_id,
            provenance.c.source_version,
        )
        mine = (
            provenance.c.source_system == self.system,
            provenance.c.role.in_(schema.OWNED_ROLES),
        )
        found: list[tuple] = []
        if stored:
            with values_in(conn, provenance.c.record_key, sorted(keys)) as wanted:
                query = select(*columns).where(*mine, wanted)
                found = [(row[0], *row) for row in conn.execute(query)]
            parts = _parts_stored(conn, select(*columns).where(*mine), sorted(keys))
            found += [(key, *row) for key in sorted(keys) for row in parts.get(key, ())]
        #: withdrawals older than the stored version -> whether this run stored it
        newer: dict[str, bool] = {}
        for whole, *_, run, version in found:
            if older(keys[whole], admission_version(version)):
                newer[whole] = newer.get(whole, False) or run == report.run_id
        rows: dict[str, list[tuple[str, int, int]]] = {}
        for whole, key, table, cdm_id, run, _ in found:
            if whole not in newer:
                rows.setdefault(key, []).append((table, cdm_id, run))
        missing = keys.keys() - here - {whole for whole, *_ in found} - newer.keys()
        nothing = len(missing & amending) + len(newer)
        if nothing:
            report.warnings[WITHDRAWN_NOTHING] += nothing
        for whole, this_run in newer.items():
            rule = (rules or {}).get(whole)
            if rule and report.skipped_rules[rule] > 0:
                report.skipped_rules.subtract((rule,))
                if not report.skipped_rules[rule]:
                    del report.skipped_rules[rule]
                report.skipped_rules[SUPERSEDED if this_run else OLDER_THAN_STORED] += 1
        persons: set[int] = set()
        # a patient's own record last: the facts withdrawn with it no longer name it
        ordered = sorted(rows.items(), key=lambda item: any(t == "person" for t, *_ in item[1]))
        for key, stored in ordered:
            person = next((cdm_id for table, cdm_id, _ in stored if table == "person"), None)
            if person is not None and (person in named or person_in_use(conn, person, self.system)):
                report.warnings[WITHDRAWN_PERSON_KEPT] += 1
                _keep_withdrawn(conn, self.system, key)
                self._withdrawn_kept = True
                continue
            persons.update(_remove_record(conn, stored, report))
        return persons

    def _has_withdrawn_kept(self, conn: Connection) -> bool:
        """Whether the source system keeps a withdrawn patient's person (looked up once)."""
        if self._withdrawn_kept is None:
            source = schema.source_record
            mine = (source.c.source_system == self.system, source.c.role == schema.WITHDRAWN)
            found = conn.execute(select(source.c.role).where(*mine).limit(1)).first()
            self._withdrawn_kept = found is not None
        return self._withdrawn_kept

    def _has_withdrawals(self, conn: Connection) -> bool:
        """Whether the source system has withdrawal rows (looked up once)."""
        if self._withdrawals is None:
            table = schema.withdrawal
            mine = select(table.c.rule).where(table.c.source_system == self.system)
            self._withdrawals = conn.execute(mine.limit(1)).first() is not None
        return self._withdrawals

    def _withdrawn_later(self, conn: Connection, batch: Batch) -> dict[str, int]:
        """The batch's records older than the stored withdrawal of their key (an HL7 A01
        read after the A11 that cancels it, sent after it; see `_withdraw` for the version
        compared), each with the run that withdrew it: they stay withdrawn, skipped."""
        versioned = sorted(key for key in batch.sources if batch.versions.get(key))
        if not versioned or not self._has_withdrawals(conn):
            return {}
        table = schema.withdrawal
        columns = (table.c.record_key, table.c.source_version, table.c.ingest_run_id)
        with values_in(conn, table.c.record_key, versioned) as wanted:
            found = conn.execute(
                select(*columns).where(table.c.source_system == self.system, wanted)
            ).all()
        return {
            key: run
            for key, version, run in found
            if older(admission_version(batch.versions[key]), version)
        }

    def _note_withdrawals(
        self, conn: Connection, batch: Batch, loaded: list[object], report: IngestReport
    ) -> None:
        """Keep the keys the batch withdrew with their rule and version (table withdrawal),
        and forget those of the records it loaded."""
        table = schema.withdrawal
        mine = table.c.source_system == self.system
        rules = batch.withdrawal_rules
        if rules:
            with values_in(conn, table.c.record_key, sorted(rules)) as wanted:
                conn.execute(delete(table).where(mine, wanted))
            rows = [
                {"source_system": self.system, "record_key": scrub_text(key), "rule": rule}
                | {"ingest_run_id": report.run_id, "source_version": batch.withdrawn.get(key)}
                for key, rule in rules.items()
            ]
            bulk_insert(conn, table, rows)
            self._withdrawals = True
        if self._has_withdrawals(conn) and loaded:
            back = sorted({str(key) for key in loaded} - rules.keys())
            with values_in(conn, table.c.record_key, back) as wanted:
                conn.execute(delete(table).where(mine, wanted))

    def _release(self, conn: Connection, keys: list[object], run_id: int) -> None:
        """Remove the quarantine rows of earlier runs for records now loaded (a record
        quarantined, then read again after a fix): the quarantine lists what is not loaded.
        Skipped while the source system has no keyed quarantine rows."""
        if not keys:
            return
        table = schema.quarantine
        mine = (table.c.source_system == self.system, table.c.record_key.is_not(None))
        if self._keyed_quarantine is None:
            found = conn.execute(select(table.c.quarantine_id).where(*mine).limit(1)).first()
            self._keyed_quarantine = found is not None
        if not self._keyed_quarantine:
            return
        with values_in(conn, table.c.record_key, sorted(set(keys))) as loaded:
            conn.execute(delete(table).where(*mine, table.c.ingest_run_id != run_id, loaded))

    def _keep_discharges(self, conn: Connection, batch: Batch, run_id: int) -> None:
        """Keep the batch's discharges that wait for their visit, forget those that ended
        it, and file the facts filed under each of those (keys `KEY/…`) under its visit; those
        of a patient merged into another wait for the survivor's visits."""
        if batch.applied:
            discharges.forget(conn, self.system, batch.applied)
        kept = [v for v in batch.pending if v.key not in batch.applied]
        if kept:
            discharges.remember(conn, self.system, kept, run_id, batch.spent, batch.ended)
        for _, _, merge in batch.merges:
            if merge.restores is None:
                discharges.adopt(conn, self.system, merge.old_person_key, merge.person_key)
        source = schema.source_record
        for key, visit_key in batch.relinks.items():
            visit = visit_id(self.system, visit_key)
            for table in _IN_VISITS:
                filed = select(source.c.cdm_id).where(
                    source.c.source_system == self.system,
                    source.c.cdm_table == table.name,
                    source.c.record_key.startswith(f"{key}/", autoescape=True),
                )
                primary = next(iter(table.primary_key.columns))
                found = update(table).where(primary.in_(filed))
                conn.execute(found.values(visit_occurrence_id=visit))

    def _release_older(
        self, conn: Connection, links: dict[str, list[object]], report: IngestReport
    ) -> None:
        """Remove the quarantine rows this run wrote for older versions of records now
        loaded (a bad message, then its correction, in one run): each is counted again as
        superseded in the run, no longer as quarantined."""
        if not self._versioned_quarantine:
            return
        loaded = zip(links["record_key"], links["source_version"], strict=True)
        for key, version in dict(loaded).items():
            held = self._versioned_quarantine.get(str(key))
            if not held or version is None:
                continue
            gone = [entry for entry in held if older(entry[1], str(version))]
            if not gone:
                continue
            self._versioned_quarantine[str(key)] = [e for e in held if e not in gone]
            table = schema.quarantine
            ids = [quarantine_id for quarantine_id, _, _ in gone]
            conn.execute(delete(table).where(table.c.quarantine_id.in_(ids)))
            for _, _, rule in gone:
                report.rules.subtract((rule,))
                if not report.rules[rule]:
                    del report.rules[rule]
            report.quarantined -= len(gone)
            report.skipped += len(gone)
            report.skipped_rules[SUPERSEDED] += len(gone)

    def _unsuperseded(self, conn: Connection, batch: Batch, report: IngestReport) -> list[Rejected]:
        """The batch's quarantine entries, less those of records whose newer version the
        batch holds or the store keeps: those are skipped as superseded in the run (or as
        older than stored, when an earlier run stored the newer one), and a quarantine row
        an earlier run wrote for the same record goes."""
        versioned = {r.key for r in batch.quarantine if r.key is not None and r.version}
        if not versioned:
            return batch.quarantine
        stored: dict[str, list[tuple[int, str | None]]] = {}
        if self._has_provenance(conn):
            source = schema.source_record
            with values_in(conn, source.c.record_key, sorted(versioned)) as wanted:
                found = conn.execute(
                    select(source.c.record_key, source.c.ingest_run_id, source.c.source_version)
                    .where(source.c.source_system == self.system)
                    .where(source.c.role.in_(schema.OWNED_ROLES))
                    .where(wanted)
                )
                for key, run, version in found:
                    stored.setdefault(key, []).append((run, version))
        kept: list[Rejected] = []
        stale: list[int] = []
        for r in batch.quarantine:
            if r.key is None or not r.version:
                kept.append(r)
                continue
            runs = {run for run, version in stored.get(r.key, ()) if older(r.version, version)}
            if older(r.version, batch.versions.get(r.key)) or report.run_id in runs:
                rule = SUPERSEDED
            elif runs:
                rule = OLDER_THAN_STORED
            else:
                kept.append(r)
                continue
            report.skipped += 1
            report.skipped_rules[rule] += 1
            stale.append(_quarantine_id(self.system, r, set()))
        if stale:
            table = schema.quarantine
            conn.execute(delete(table).where(table.c.quarantine_id.in_(stale)))
        return kept

    def _confirm(self, conn: Connection, batch: Batch, run_id: int) -> None:
        """Write the batch's confirmations, replacing this source system's earlier ones of
        the same records."""
        if not batch.confirmations:
            return
        provenance = schema.source_record
        keys = sorted(batch.confirmations)
        with values_in(conn, provenance.c.record_key, keys) as wanted:
            conn.execute(
                delete(provenance)
                .where(provenance.c.source_system == self.system)
                .where(provenance.c.role == schema.CONFIRMS)
                .where(wanted)
            )
        rows = [
            {**row, "source_system": self.system, "ingest_run_id": run_id}
            for row in batch.confirmations.values()
        ]
        bulk_insert(conn, provenance, rows)

    def _trace_merge(
        self, conn: Connection, merge: SourceMerge, survivor: int, run_id: int
    ) -> None:
        """Link a merge record to the person it merged into (role MERGES)."""
        digest = hashlib.sha256(merge.raw).hexdigest()
        if self.interpretation:
            digest = salted(digest, self.interpretation)
        source = schema.source_record
        key = scrub_text(merge.key)
        row = (source.c.cdm_table == "person", source.c.cdm_id == survivor)
        row = (*row, source.c.source_system == self.system, source.c.record_key == key)
        conn.execute(delete(source).where(*row))
        conn.execute(
            insert(source).values(
                cdm_table="person",
                cdm_id=survivor,
                source_system=self.system,
                record_key=key,
                location=scrub_text(merge.location),
                content_hash=digest,
                ingest_run_id=run_id,
                role=schema.MERGES,
                person_key=scrub_text(merge.old_person_key),
            )
        )

    def _unlink(
        self,
        conn: Connection,
        unlink: SourceMerge,
        restores: SourcePerson,
        person_id: int,
        report: IngestReport,
    ) -> None:
        """Give the unlinked identifier its own person again (`person_id`, as `restores`
        says, traced to the unlink record under the identifier's key) and move back every
        row filed under it. Its stored patient record this run loaded is superseded."""
        source = schema.source_record
        key = scrub_text(restores.key)
        mine = (source.c.source_system == self.system, source.c.record_key == key)
        mine = (*mine, source.c.cdm_table.in_(("person", "death")))
        stale = conn.execute(
            select(source.c.cdm_table, source.c.ingest_run_id, source.c.role).where(*mine)
        ).all()
        for table, run, role in stale:
            if run == report.run_id and role in schema.OWNED_ROLES:
                report.rows[table] -= 1
        if any(run == report.run_id for _, run, _ in stale):
            report.loaded -= 1  # loaded earlier in this run: superseded by the unlink
            report.skipped += 1
            report.skipped_rules[SUPERSEDED] += 1
        conn.execute(delete(source).where(*mine))
        for name in ("death", "person"):
            table = schema.metadata.tables[name]
            conn.execute(delete(table).where(table.c.person_id == person_id))
        digest = hashlib.sha256(unlink.raw).hexdigest()
        if self.interpretation:
            digest = salted(digest, self.interpretation)
        made = [person_row(self.system, restores)]
        if restores.death_date is not None:
            made.append(death_row(self.system, restores))
        for row in made:
            table = schema.metadata.tables[row.table]
            insert_columns(conn, table, row_columns(table, [row.values]))
            conn.execute(
                insert(source).values(
                    cdm_table=row.table,
                    cdm_id=row.id,
                    source_system=self.system,
                    record_key=key,
                    location=scrub_text(unlink.location),
                    content_hash=digest,
                    ingest_run_id=report.run_id,
                    role=schema.PRODUCED,
                )
            )
            report.rows[row.table] += 1
        report.loaded += 1
        for name in schema.CLINICAL_TABLES:
            table = schema.metadata.tables[name]
            if name in ("person", "death", "observation_period") or "person_id" not in table.c:
                continue
            filed = select(source.c.cdm_id).where(
                source.c.cdm_table == name,
                source.c.source_system == self.system,
                source.c.person_key == key,
            )
            primary = next(iter(table.primary_key.columns))
            conn.execute(update(table).where(primary.in_(filed)).values(person_id=person_id))

    def _quarantine(self, conn: Connection, rejected: list[Rejected], report: IngestReport) -> None:
        rows = []
        taken = self._quarantine_ids.setdefault(report.run_id, set())
        for r in rejected:
            quarantine_id = _quarantine_id(self.system, r, taken)
            taken.add(quarantine_id)
            if r.key is not None:
                self._keyed_quarantine = True
                if r.version is not None:
                    entry = (quarantine_id, r.version, r.rule)
                    self._versioned_quarantine.setdefault(r.key, []).append(entry)
            rows.append(
                {
                    "quarantine_id": quarantine_id,
                    "ingest_run_id": report.run_id,
                    "source_system": self.system,
                    "location": scrub_text(r.location),
                    "record_key": r.key and scrub_text(r.key),
                    "rule": r.rule,
                    "message": scrub_text(r.message),
                    "raw": r.raw,
                }
            )
            report.rules[r.rule] += 1
        report.quarantined += len(rows)
        if rows:
            table = schema.quarantine
            ids = [r["quarantine_id"] for r in rows]
            with values_in(conn, table.c.quarantine_id, ids) as stale:
                conn.execute(delete(table).where(stale))
            bulk_insert(conn, table, rows)


def _quarantine_id(system: str, rejected: Rejected, taken: set[int]) -> int:
    """The id of a quarantined record: from its place, rule, key and content (a replaced
    file at the same path keeps its earlier rows), with an occurrence number when the run
    already quarantined one identical record (each keeps its own row)."""
    digest = hashlib.sha256(rejected.raw or b"").hexdigest()
    parts = (system, rejected.location, rejected.rule, rejected.key or "", digest)
    quarantine_id = stable_id(*parts)
    occurrence = 1
    while quarantine_id in taken:
        occurrence += 1
        quarantine_id = stable_id(*parts, str(occurrence))
    return quarantine_id


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _write_tallies(conn: Connection, report: IngestReport) -> None:
    """Keep the run's per-rule counts of skipped records and warnings, its unmapped codes
    ("system|code", without NUL, cut to the column's length) and its pruned rows per table,
    beside its counters."""
    tally = schema.ingest_tally
    conn.execute(delete(tally).where(tally.c.ingest_run_id == report.run_id))
    unmapped: Counter[str] = Counter()
    for code, count in report.unmapped.items():
        unmapped[scrub_text(code)[: tally.c.rule.type.length]] += count
    rows = [
        {"ingest_run_id": report.run_id, "kind": kind, "rule": rule, "count": count}
        for kind, counter in (
            ("skipped", report.skipped_rules),
            ("warning", report.warnings),
            ("unmapped", unmapped),
            ("pruned", report.pruned_rows),
            ("withdrawn", report.withdrawn_rows),
        )
        for rule, count in counter.items()
    ]
    if rows:
        conn.execute(insert(tally), rows)


def delete_row(conn: Connection, table_name: str, cdm_id: int, keep_others: bool = False) -> None:
    """Delete one CDM row and its provenance; with `keep_others` (the row is about to be
    written again under the same id) the records of other source systems that confirm it
    keep theirs."""
    table = schema.metadata.tables[table_name]
    primary = next(iter(table.primary_key.columns))
    conn.execute(delete(table).where(primary == cdm_id))
    source = schema.source_record
    found = delete(source).where(source.c.cdm_table == table_name, source.c.cdm_id == cdm_id)
    if keep_others:
        found = found.where(source.c.role.in_(schema.OWNED_ROLES))
    conn.execute(found)


#: The tables whose rows may name a visit (visit_occurrence_id).
_IN_VISITS = [
    t
    for t in schema.metadata.tables.values()
    if "visit_occurrence_id" in t.c
    and t.name != "visit_occurrence"
    and t.c.visit_occurrence_id.nullable
]


def _forget_visit(conn: Connection, visit_id: int) -> None:
    """Rows that named a withdrawn visit (a cancelled admission) stay, in no visit."""
    for table in _IN_VISITS:
        column = table.c.visit_occurrence_id
        conn.execute(update(table).where(column == visit_id).values(visit_occurrence_id=None))


def _unfile_from_gone_visits(conn: Connection, tables: dict[str, dict[str, list]]) -> None:
    """File in no visit the rows just inserted that name a visit not stored (one a
    withdrawal of their batch left out or removed: an A11 read before or after its A01)."""
    named = {
        visit
        for table in _IN_VISITS
        for visit in tables.get(table.name, {}).get("visit_occurrence_id", ())
        if visit is not None
    }
    if not named:
        return
    visit = schema.visit_occurrence.c.visit_occurrence_id
    with values_in(conn, visit, sorted(named)) as wanted:
        stored = set(conn.execute(select(visit).where(wanted)).scalars())
    for gone in named - stored:
        _forget_visit(conn, gone)


def _keep_withdrawn(conn: Connection, system: str, key: str) -> None:
    """Mark the rows of a withdrawn patient record whose person is kept (role WITHDRAWN)."""
    source = schema.source_record
    conn.execute(
        update(source)
        .where(source.c.source_system == system, source.c.record_key == key)
        .where(source.c.role.in_(schema.OWNED_ROLES))
        .values(role=schema.WITHDRAWN)
    )


def _remove_record(
    conn: Connection, stored: list[tuple[str, int, int]], report: IngestReport
) -> set[int]:
    """Remove a withdrawn record's rows (table, id, ingest run) with their provenance (a
    person with its observation periods), counted as withdrawn, or as superseded when
    this run loaded it; return the persons whose rows went."""
    persons: set[int] = set()
    person = next((cdm_id for table, cdm_id, _ in stored if table == "person"), None)
    if person is not None:
        period = schema.observation_period
        conn.execute(delete(period).where(period.c.person_id == person))
    for table, cdm_id, run in stored:
        persons.update(_person_of(conn, table, cdm_id))
        delete_row(conn, table, cdm_id)
        if table == "visit_occurrence":
            _forget_visit(conn, cdm_id)
        if run == report.run_id:
            report.rows[table] -= 1
        else:
            report.withdrawn_rows[table] += 1
    if any(run == report.run_id for *_, run in stored):
        report.loaded -= 1  # loaded by an earlier batch of this run: superseded
        report.skipped += 1
        report.skipped_rules[SUPERSEDED] += 1
    else:
        report.withdrawn += 1
    return persons


def remove_withdrawn_persons(conn: Connection, system: str, report: IngestReport) -> None:
    """Remove the persons of `system`'s withdrawn patient records (role WITHDRAWN) that
    nothing names any more: kept while rows named them, they go once those rows are
    withdrawn, pruned or re-filed; each counts as withdrawn."""
    source = schema.source_record
    found = conn.execute(
        select(
            source.c.record_key, source.c.cdm_table, source.c.cdm_id, source.c.ingest_run_id
        ).where(source.c.source_system == system, source.c.role == schema.WITHDRAWN)
    ).all()
    by_key: dict[str, list[tuple[str, int, int]]] = {}
    for key, table, cdm_id, run in found:
        by_key.setdefault(key, []).append((table, cdm_id, run))
    for stored in by_key.values():
        person = next((cdm_id for table, cdm_id, _ in stored if table == "person"), None)
        if person is not None and not person_in_use(conn, person, system):
            _remove_record(conn, stored, report)


def person_in_use(conn: Connection, person_id: int, system: str) -> bool:
    """Whether a row other than the person's own (death, observation periods) names the
    person, or a record of a source system other than `system` confirms it."""
    source = schema.source_record
    confirmed = select(source.c.cdm_id).where(
        source.c.cdm_table == "person",
        source.c.cdm_id == person_id,
        source.c.role == schema.CONFIRMS,
        source.c.source_system != system,
    )
    if conn.execute(confirmed.limit(1)).first() is not None:
        return True
    for name in schema.CLINICAL_TABLES:
        table = schema.metadata.tables[name]
        if name in ("person", "death", "observation_period") or "person_id" not in table.c:
            continue
        if conn.execute(
            select(table.c.person_id).where(table.c.person_id == person_id).limit(1)
        ).first():
            return True
    return False


def _person_of(conn: Connection, table_name: str, cdm_id: int) -> set[int]:
    """The person a CDM row belongs to, as a set (empty for a row of no person)."""
    table = schema.metadata.tables[table_name]
    if "person_id" not in table.c:
        return set()
    primary = next(iter(table.primary_key.columns))
    found = conn.execute(select(table.c.person_id).where(primary == cdm_id)).scalar()
    return {found} if found else set()


def _merge_person(conn: Connection, old_id: int, new_id: int, run_id: int) -> int | None:
    """Move every row of person `old_id` to `new_id`, then remove the old person. The
    records that made it now trace to the survivor as retired identifiers (role MERGED),
    so that what comes later under them files there, and re-reading them neither brings
    the old person back nor makes the merge dangle; earlier merges into it follow. None
    when there was no such person left to merge, else how many of the records that made
    it run `run_id` loaded."""
    person = schema.person
    if conn.execute(select(person.c.person_id).where(person.c.person_id == old_id)).first() is None:
        return None
    for name in schema.CLINICAL_TABLES:
        table = schema.metadata.tables[name]
        if name in ("person", "death", "observation_period") or "person_id" not in table.c:
            continue
        conn.execute(update(table).where(table.c.person_id == old_id).values(person_id=new_id))
    for name in ("person", "death", "observation_period"):
        table = schema.metadata.tables[name]
        conn.execute(delete(table).where(table.c.person_id == old_id))
    _move_confirmations(conn, old_id, new_id)
    source = schema.source_record
    made = (source.c.cdm_table == "person", source.c.cdm_id == old_id)
    owned = source.c.role.in_((schema.PRODUCED, schema.WITHDRAWN))
    retired = conn.execute(
        select(func.count()).where(*made, owned, source.c.ingest_run_id == run_id)
    ).scalar_one()
    conn.execute(update(source).where(*made, owned).values(cdm_id=new_id, role=schema.MERGED))
    merged = source.c.role.in_((schema.MERGED, schema.MERGES))
    conn.execute(update(source).where(*made, merged).values(cdm_id=new_id))
    return retired


def _move_confirmations(conn: Connection, old_id: int, new_id: int) -> None:
    """Point the records that confirmed person `old_id` (other source systems' patients,
    role CONFIRMS) at `new_id`; one that already traces to `new_id` drops its old row."""
    source = schema.source_record
    of = (source.c.cdm_table == "person", source.c.role == schema.CONFIRMS)
    moving = conn.execute(
        select(source.c.source_system, source.c.record_key).where(*of, source.c.cdm_id == old_id)
    ).all()
    if not moving:
        return
    held = set(
        conn.execute(
            select(source.c.source_system, source.c.record_key).where(
                source.c.cdm_table == "person", source.c.cdm_id == new_id
            )
        ).all()
    )
    for system, key in moving:
        row = (*of, source.c.cdm_id == old_id, source.c.source_system == system)
        row = (*row, source.c.record_key == key)
        if (system, key) in held:
            conn.execute(delete(source).where(*row))
        else:
            conn.execute(update(source).where(*row).values(cdm_id=new_id))


def rebuild_observation_periods(conn: Connection, person_ids: set[int]) -> None:
    """One observation period per person, from their first to their last dated record."""
    if not person_ids:
        return
    s = schema
    dated = []
    for name in (
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
        "measurement",
        "observation",
    ):
        table = s.metadata.tables[name]
        date_column = table.c[s.EVENT_COLUMNS[name].date]
        dated.append(select(table.c.person_id, date_column.label("d")))
    events = union_all(*dated).subquery()
    op = s.observation_period
    ids = sorted(person_ids)
    with (
        values_in(conn, op.c.person_id, ids) as stale,
        values_in(conn, events.c.person_id, ids) as touched,
    ):
        conn.execute(delete(op).where(stale))
        periods = (
            select(
                events.c.person_id,
                events.c.person_id,
                func.min(events.c.d),
                func.max(events.c.d),
                literal(32817),
            )
            .where(touched)
            .group_by(events.c.person_id)
        )
        conn.execute(
            insert(op).from_select(
                [
                    "observation_period_id",
                    "person_id",
                    "observation_period_start_date",
                    "observation_period_end_date",
                    "period_type_concept_id",
                ],
                periods,
            )
        )
