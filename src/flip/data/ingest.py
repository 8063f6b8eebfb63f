"""Ingest a source into a store: map, validate, quarantine, and commit batch by batch.

Each batch commits whole or not at all. A record's identity is (source system,
record key): re-ingesting an unchanged record adds nothing, and a changed one
replaces the rows it produced before.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import Connection, delete, func, insert, literal, select, union_all, update

from flip.data.cdm import schema
from flip.data.cdm.rows import CdmRow, death_row, event_row, person_row, stable_id, visit_row
from flip.data.cdm.store import Store, bulk_insert
from flip.data.sources.records import Rejected, SourceEvent, SourcePerson, SourceRecord, SourceVisit
from flip.data.terminology.vocabulary import Vocabulary
from flip.data.validate.plausibility import birth_problem, date_problem

BATCH_SIZE = 5000


@dataclass
class IngestReport:
    """What one ingest run read, loaded, left unchanged and quarantined."""

    run_id: int
    read: int = 0
    loaded: int = 0
    unchanged: int = 0
    quarantined: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "read": self.read,
            "loaded": self.loaded,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
            "rows": dict(self.rows),
            "rules": dict(self.rules),
            "unmapped": dict(self.unmapped),
        }


def _batches(records: Iterable[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


class _Batch:
    """The rows, provenance and quarantine entries of one batch, before they are written."""

    def __init__(self) -> None:
        self.rows: dict[str, list[CdmRow]] = {}
        self.sources: dict[str, tuple[str, str]] = {}
        self.quarantine: list[Rejected] = []

    def add(self, record: SourcePerson | SourceVisit | SourceEvent, row: CdmRow) -> None:
        self.rows.setdefault(record.key, []).append(row)
        self.sources[record.key] = (record.location, hashlib.sha256(record.raw).hexdigest())


class Ingestor:
    """Writes records from one source system into a store."""

    def __init__(self, store: Store, vocabulary: Vocabulary, source_system: str) -> None:
        self.store = store
        self.vocab = vocabulary
        self.system = source_system
        self.births: dict[str, date] = {}
        self.deferred: list[SourceRecord] = []
        self.today = datetime.now(UTC).date()

    def run(
        self,
        records: Iterable[SourceRecord],
        *,
        kind: str,
        uri: str,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Ingest every record; return the report. Bad records are quarantined, not fatal."""
        started = datetime.now(UTC).replace(tzinfo=None)
        run_id = stable_id(self.system, uri, started.isoformat())
        report = IngestReport(run_id=run_id)
        with self.store.begin() as conn:
            conn.execute(
                insert(schema.ingest_run).values(
                    ingest_run_id=run_id,
                    source_kind=kind,
                    source_uri=uri,
                    started_at=started,
                    status="running",
                )
            )
        status = "failed"
        try:
            for batch in _batches(records, BATCH_SIZE):
                self._write(self._convert(batch, report, final=False), run_id, report)
                report.read += len(batch)
                if progress:
                    progress(len(batch))
            for batch in _batches(self.deferred, BATCH_SIZE):
                self._write(self._convert(batch, report, final=True), run_id, report)
            with self.store.begin() as conn:
                _rebuild_observation_periods(conn)
            status = "completed"
        finally:
            with self.store.begin() as conn:
                conn.execute(
                    update(schema.ingest_run)
                    .where(schema.ingest_run.c.ingest_run_id == run_id)
                    .values(
                        finished_at=datetime.now(UTC).replace(tzinfo=None),
                        status=status,
                        records_read=report.read,
                        records_loaded=report.loaded,
                        records_unchanged=report.unchanged,
                        records_quarantined=report.quarantined,
                    )
                )
        return report

    def _convert(self, batch: list[SourceRecord], report: IngestReport, final: bool) -> _Batch:
        """Rows of a batch. A record whose patient is not known yet waits for the end of the
        run (`final=False`); at the end (`final=True`) it is a dangling reference."""
        out = _Batch()
        missing = {
            r.person_key
            for r in batch
            if isinstance(r, SourceEvent | SourceVisit) and r.person_key not in self.births
        } - {r.key for r in batch if isinstance(r, SourcePerson)}
        if missing:
            self._load_births(missing)
        for record in batch:
            if (
                not final
                and isinstance(record, SourceEvent | SourceVisit)
                and record.person_key not in self.births
            ):
                self.deferred.append(record)
                continue
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(problem)
        return out

    def _convert_one(
        self, record: SourceRecord, out: _Batch, report: IngestReport
    ) -> Rejected | None:
        if isinstance(record, Rejected):
            return record
        if isinstance(record, SourcePerson):
            problem = birth_problem(record.birth_date, self.today)
            if problem:
                return Rejected(record.key, record.location, *problem, record.raw)
            assert record.birth_date is not None
            self.births[record.key] = record.birth_date
            out.add(record, person_row(self.system, record))
            if record.death_date is not None:
                problem = date_problem(record.death_date, record.birth_date, self.today)
                if problem:
                    return Rejected(record.key, record.location, *problem, record.raw)
                out.add(record, death_row(self.system, record))
            return None
        birth = self.births.get(record.person_key)
        if birth is None:
            message = f"refers to {record.person_key}, which is not in this source"
            return Rejected(record.key, record.location, "reference.dangling", message, record.raw)
        problem = date_problem(record.start, birth, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        person_id = stable_id(self.system, "person", record.person_key)
        if isinstance(record, SourceVisit):
            out.add(record, visit_row(self.system, record, person_id))
            return None
        row, mapped = event_row(self.system, record, person_id, self.vocab)
        if not mapped:
            report.unmapped[f"{record.system}|{record.code}"] += 1
        out.add(record, row)
        return None

    def _load_births(self, keys: set[str]) -> None:
        ids = {stable_id(self.system, "person", k): k for k in keys}
        person = schema.person
        with self.store.connect() as conn:
            found = conn.execute(
                select(
                    person.c.person_id,
                    person.c.year_of_birth,
                    person.c.month_of_birth,
                    person.c.day_of_birth,
                ).where(person.c.person_id.in_(list(ids)))
            )
            for pid, year, month, day in found:
                self.births[ids[pid]] = date(year, month or 1, day or 1)

    def _write(self, batch: _Batch, run_id: int, report: IngestReport) -> None:
        provenance = schema.source_record
        with self.store.begin() as conn:
            existing: dict[str, list[tuple[str, int, str]]] = {}
            keys = list(batch.rows)
            for chunk in range(0, len(keys), 1000):
                for key, table, cdm_id, digest in conn.execute(
                    select(
                        provenance.c.record_key,
                        provenance.c.cdm_table,
                        provenance.c.cdm_id,
                        provenance.c.content_hash,
                    )
                    .where(provenance.c.source_system == self.system)
                    .where(provenance.c.record_key.in_(keys[chunk : chunk + 1000]))
                ):
                    existing.setdefault(key, []).append((table, cdm_id, digest))
            inserts: dict[str, list[dict[str, object]]] = {}
            links: list[dict[str, object]] = []
            for key, rows in batch.rows.items():
                old = existing.get(key, [])
                location, digest = batch.sources[key]
                if old and all(d == digest for _, _, d in old):
                    report.unchanged += 1
                    continue
                for table, cdm_id, _ in old:
                    _delete_row(conn, table, cdm_id)
                for row in rows:
                    inserts.setdefault(row.table, []).append(row.values)
                    links.append(
                        {
                            "cdm_table": row.table,
                            "cdm_id": row.id,
                            "source_system": self.system,
                            "record_key": key,
                            "location": location,
                            "content_hash": digest,
                            "ingest_run_id": run_id,
                        }
                    )
                    report.rows[row.table] += 1
                report.loaded += 1
            for table, values in inserts.items():
                bulk_insert(conn, schema.metadata.tables[table], values)
            bulk_insert(conn, provenance, links)
            self._quarantine(conn, batch.quarantine, run_id, report)

    def _quarantine(
        self, conn: Connection, rejected: list[Rejected], run_id: int, report: IngestReport
    ) -> None:
        rows = []
        for r in rejected:
            qid = stable_id(self.system, r.location, r.rule)
            rows.append(
                {
                    "quarantine_id": qid,
                    "ingest_run_id": run_id,
                    "source_system": self.system,
                    "location": r.location,
                    "record_key": r.key,
                    "rule": r.rule,
                    "message": r.message,
                    "raw": r.raw,
                }
            )
            report.rules[r.rule] += 1
        report.quarantined += len(rows)
        if rows:
            table = schema.quarantine
            conn.execute(
                delete(table).where(table.c.quarantine_id.in_([r["quarantine_id"] for r in rows]))
            )
            bulk_insert(conn, table, rows)


def _delete_row(conn: Connection, table_name: str, cdm_id: int) -> None:
    table = schema.metadata.tables[table_name]
    primary = next(iter(table.primary_key.columns))
    conn.execute(delete(table).where(primary == cdm_id))
    source = schema.source_record
    conn.execute(delete(source).where(source.c.cdm_table == table_name, source.c.cdm_id == cdm_id))


def _rebuild_observation_periods(conn: Connection) -> None:
    """One observation period per person, from the first to the last dated record."""
    s = schema
    dated = union_all(
        select(s.visit_occurrence.c.person_id, s.visit_occurrence.c.visit_start_date.label("d")),
        select(s.visit_occurrence.c.person_id, s.visit_occurrence.c.visit_end_date),
        select(s.condition_occurrence.c.person_id, s.condition_occurrence.c.condition_start_date),
        select(s.measurement.c.person_id, s.measurement.c.measurement_date),
        select(s.observation.c.person_id, s.observation.c.observation_date),
    ).subquery()
    periods = select(
        dated.c.person_id,
        dated.c.person_id,
        func.min(dated.c.d),
        func.max(dated.c.d),
        literal(32817),
    ).group_by(dated.c.person_id)
    op = s.observation_period
    conn.execute(delete(op))
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


def ingest_path(
    store: Store,
    kind: str,
    path: Path,
    *,
    mapping: Path | None = None,
    source_system: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest a FHIR file or folder (`kind="fhir"`) or a CSV extract (`kind="csv"`).

    `source_system` names the source for provenance and record identity; it
    defaults to the kind and the folder name, so moving a folder keeps identities.
    """
    from flip.data.sources import fhir, tabular

    vocabulary = Vocabulary.from_store(store)
    if kind == "fhir":
        return Ingestor(store, vocabulary, source_system or f"fhir:{path.name}").run(
            fhir.read_path(path), kind=kind, uri=str(path), progress=progress
        )
    if kind == "csv":
        spec = tabular.CsvMapping.load(mapping or path / "mapping.yaml")
        vocabulary = vocabulary.with_local_codes(spec.local_codes)
        return Ingestor(store, vocabulary, source_system or f"csv:{spec.source}").run(
            tabular.read_extract(path, spec), kind=kind, uri=str(path), progress=progress
        )
    raise ValueError(f"unknown source kind {kind!r}: expected fhir or csv")
