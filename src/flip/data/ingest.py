"""Ingest a source into a store: map, validate, quarantine, and commit batch by batch.

Each batch commits whole or not at all. A record's identity is (source system,
record key): re-ingesting an unchanged record adds nothing, and a changed one
replaces the rows it produced before. A record whose patient has not been seen
yet waits for the end of the run, so files and entries may come in any order.
"""

from __future__ import annotations

import gc
import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

from sqlalchemy import (
    Connection,
    create_engine,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)

from flip.data.cdm import schema
from flip.data.cdm.rows import (
    GENDERS,
    IDENTIFIED,
    CdmRow,
    block_columns,
    day,
    death_row,
    event_row,
    person_id,
    person_row,
    stable_id,
    visit_row,
)
from flip.data.cdm.schema import DOMAIN_TABLES
from flip.data.cdm.store import Store, bulk_insert, insert_columns, row_columns, values_in
from flip.data.sources.records import (
    BlockEvent,
    EventBlock,
    Rejected,
    Skipped,
    SourceEvent,
    SourceMerge,
    SourcePerson,
    SourceRecord,
    SourceRow,
    SourceVisit,
    Unread,
)
from flip.data.terminology.vocabulary import Mapping, Vocabulary
from flip.data.validate.plausibility import birth_problem, date_problem, value_problem

BATCH_SIZE = 20000

#: The skip rule of a record that a later record with the same key replaced in one run.
SUPERSEDED = "identity.superseded_in_run"

#: The skip rule of a patient record whose business identifier names a person already
#: loaded (earlier in the run, or by another source); its facts file under that person.
SAME_PERSON = "person.identifier.known"

#: The warning rule of such a record whose birth date or gender differ from the person's.
DEMOGRAPHICS_CONFLICT = "person.demographics.conflict"

#: Id columns of CDM rows and the table each refers to (for rows from OMOP sources).
REFERENCES = {
    "person_id": "person",
    "visit_occurrence_id": "visit_occurrence",
    "preceding_visit_occurrence_id": "visit_occurrence",
    "visit_detail_id": "visit_detail",
    "preceding_visit_detail_id": "visit_detail",
    "parent_visit_detail_id": "visit_detail",
    "provider_id": "provider",
    "care_site_id": "care_site",
    "location_id": "location",
    "payer_plan_period_id": "payer_plan_period",
    "note_id": "note",
    "episode_parent_id": "episode",
}

#: cost.cost_domain_id -> the table whose row cost.cost_event_id names.
COST_DOMAINS = {
    "Visit": "visit_occurrence",
    "Condition": "condition_occurrence",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Device": "device_exposure",
    "Measurement": "measurement",
    "Observation": "observation",
    "Specimen": "specimen",
}


@dataclass
class IngestReport:
    """What one ingest run read, loaded, left unchanged, quarantined and skipped.

    `unread` lists the files or tables of the source that were not read, with why;
    `conflicts` the patient records whose demographics contradict the person they name.
    Every record read ends in exactly one of loaded, unchanged, quarantined (`rules`
    counts why) or skipped (`skipped_rules` counts why). `warnings` counts optional
    fields nulled because they failed to parse, per rule; their records still load.
    """

    run_id: int
    read: int = 0
    loaded: int = 0
    unchanged: int = 0
    quarantined: int = 0
    skipped: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    skipped_rules: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    unread: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "read": self.read,
            "loaded": self.loaded,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "rows": dict(self.rows),
            "rules": dict(self.rules),
            "skipped_rules": dict(self.skipped_rules),
            "warnings": dict(self.warnings),
            "unmapped": dict(self.unmapped),
            "unread": dict(self.unread),
            "conflicts": list(self.conflicts),
        }


def batches(
    records: Iterable[SourceRecord], size: int = BATCH_SIZE
) -> Iterator[list[SourceRecord]]:
    """Group records into lists of at most `size`; an EventBlock is a batch on its own."""
    batch: list[SourceRecord] = []
    for record in records:
        if type(record) is EventBlock:
            if batch:
                yield batch
                batch = []
            yield [record]
            continue
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _count(records: list[SourceRecord]) -> int:
    """How many source records a batch holds (an EventBlock counts each of its events; a
    note of an unread file counts none)."""
    return sum(len(r) if type(r) is EventBlock else type(r) is not Unread for r in records)


class _Batch:
    """The rows, provenance, merges and quarantine entries of one batch, before writing."""

    def __init__(self) -> None:
        self.rows: dict[str, list[CdmRow]] = {}
        self.owners: dict[str, SourceRecord] = {}
        self.sources: dict[str, tuple[str, str]] = {}
        self.merges: list[tuple[int, int]] = []
        self.quarantine: list[Rejected] = []
        self.waiting = 0
        self.superseded = 0
        self.merged_before = 0

    def add(
        self, record: SourcePerson | SourceVisit | SourceEvent | SourceRow, row: CdmRow
    ) -> None:
        """Add a row of `record`; a later record with the same key replaces an earlier one."""
        owner = self.owners.get(record.key)
        if owner is not record:
            if owner is not None:
                self.superseded += 1
            self.owners[record.key] = record
            self.rows[record.key] = []
        self.rows[record.key].append(row)
        self.sources[record.key] = (record.location, hashlib.sha256(record.raw).hexdigest())

    def layout(self, system: str, run_id: int, skip: Collection[str] = ()) -> _Layout:
        """The batch column by column, leaving out the records in `skip`."""
        kept = [key for key in self.rows if key not in skip]
        flat = [(key, row) for key in kept for row in self.rows[key]]
        by_table: dict[str, list[dict[str, object]]] = {}
        for _, row in flat:
            by_table.setdefault(row.table, []).append(row.values)
        tables = {
            name: row_columns(schema.metadata.tables[name], rows) for name, rows in by_table.items()
        }
        links = _links(
            self.sources,
            [row.table for _, row in flat],
            [row.id for _, row in flat],
            [key for key, _ in flat],
            system,
            run_id,
        )
        return _Layout.of(tables, links, len(kept), self.merges)


class _BlockBatch(_Batch):
    """The batch of one EventBlock: its rows already laid out column by column per table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[dict[str, list[object]], list[str]]] = {}

    def add_columns(
        self, table: str, columns: dict[str, list[object]], events: list[BlockEvent]
    ) -> None:
        """Add the rows of `events` (all landing in `table`) as columns."""
        self.tables[table] = (columns, [e.key for e in events])
        self.sources.update(
            (e.key, (e.location, hashlib.sha256(e.raw).hexdigest())) for e in events
        )

    def layout(self, system: str, run_id: int, skip: Collection[str] = ()) -> _Layout:
        """The block's columns, leaving out the records in `skip`."""
        tables: dict[str, dict[str, list[object]]] = {}
        names: list[str] = []
        ids: list[object] = []
        keys: list[str] = []
        for name, (columns, table_keys) in self.tables.items():
            if skip:
                kept = [i for i, key in enumerate(table_keys) if key not in skip]
                columns = {c: [values[i] for i in kept] for c, values in columns.items()}
                table_keys = [table_keys[i] for i in kept]
            if table_keys:
                tables[name] = columns
                names += [name] * len(table_keys)
                ids += columns[f"{name}_id"]
                keys += table_keys
        links = _links(self.sources, names, ids, keys, system, run_id)
        return _Layout.of(tables, links, len(keys), self.merges)


def _links(
    sources: dict[str, tuple[str, str]],
    tables: list[str],
    ids: list[object],
    keys: list[str],
    system: str,
    run_id: int,
) -> dict[str, list[object]]:
    """The source_record columns linking each CDM row to its source record."""
    located = [sources[key] for key in keys]
    return {
        "cdm_table": tables,
        "cdm_id": ids,
        "record_key": keys,
        "location": [location for location, _ in located],
        "content_hash": [digest for _, digest in located],
        "source_system": [system] * len(keys),
        "ingest_run_id": [run_id] * len(keys),
    }


@dataclass
class _Layout:
    """A batch's rows as columns per table, with their provenance links, ready to insert."""

    tables: dict[str, dict[str, list[object]]]
    links: dict[str, list[object]]
    records: int
    person_ids: set[int]

    @classmethod
    def of(
        cls,
        tables: dict[str, dict[str, list[object]]],
        links: dict[str, list[object]],
        records: int,
        merges: list[tuple[int, int]],
    ) -> _Layout:
        """A layout whose touched persons are those of its rows and of its merges."""
        persons = {new for _, new in merges}
        for columns in tables.values():
            persons.update(pid for pid in columns.get("person_id", ()) if pid)
        return cls(tables, links, records, persons)


@contextmanager
def young_collections_only() -> Iterator[Callable[[], None]]:
    """Hold off Python's automatic garbage collection; the caller collects young objects.

    A batch allocates hundreds of thousands of short-lived objects; left on, the
    collector rescans the run's long-lived maps (births, person ids) again and again,
    which cost ~40% of a CSV ingest. Call the function it yields between batches.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield partial(gc.collect, 0)
    finally:
        if was_enabled:
            gc.enable()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Ingestor:
    """Writes records from one source system into a store, in one ingest run.

    `start()`, then `write()` batch by batch (each commits whole), then `finish()`;
    `run()` does all three for an iterable of records.
    """

    def __init__(
        self, store: Store, vocabulary: Vocabulary, source_system: str, derive_periods: bool = True
    ) -> None:
        self.store = store
        self.derive_periods = derive_periods
        self.vocab = vocabulary
        self.system = source_system
        self.births: dict[str, date] = {}
        self.person_ids: dict[str, int] = {}
        self.identified: dict[str, tuple[date, int]] = {}
        self.deferred: list[SourceRecord] = []
        self.today = datetime.now(UTC).date()
        self.report: IngestReport | None = None

    def start(self, kind: str, uri: str) -> IngestReport:
        """Open an ingest run."""
        started = _now()
        run_id = stable_id(self.system, uri, started.isoformat())
        self.report = IngestReport(run_id=run_id)
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
        return self.report

    def write(self, records: list[SourceRecord], *, final: bool = False) -> list[Rejected]:
        """Commit one batch whole; return what it quarantined.

        A record whose patient is unknown waits for `finish()` unless `final` is set,
        in which case it is a dangling reference.
        """
        report = self._require_run()
        batch = self._convert(records, report, final)
        self._write(batch, report)
        report.read += _count(records) - batch.waiting
        return batch.quarantine

    def finish(self, status: str = "completed") -> IngestReport:
        """Resolve waiting records, then close the run with its counts."""
        report = self._require_run()
        try:
            waiting, self.deferred = self.deferred, []
            for batch in batches(waiting):
                self._write(self._convert(batch, report, final=True), report)
                report.read += _count(batch)
        except BaseException:
            status = "failed"
            raise
        finally:
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
                    )
                )
                _write_tallies(conn, report)
        return report

    def run(
        self,
        records: Iterable[SourceRecord],
        *,
        kind: str,
        uri: str,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Ingest every record; return the report. Bad records are quarantined, not fatal."""
        self.start(kind, uri)
        with young_collections_only() as collect:
            try:
                for batch in batches(records):
                    self.write(batch)
                    if progress:
                        progress(_count(batch))
                    collect()
            except BaseException:
                self.finish("failed")
                raise
            return self.finish()

    def _require_run(self) -> IngestReport:
        if self.report is None:
            raise RuntimeError("call start() before write() or finish()")
        return self.report

    def _convert(self, records: list[SourceRecord], report: IngestReport, final: bool) -> _Batch:
        if records and type(records[0]) is EventBlock:
            block = records[0]
            if block.default_table in ("note", "image_occurrence"):
                return self._convert(block.records(), report, final)
            return self._convert_block(block, report, final)
        out = _Batch()
        people: list[SourceRecord] = []
        others: list[SourceRecord] = []
        for record in records:
            if type(record) is Unread:
                report.unread[record.location] = record.reason
                continue
            (people if _is_person(record) else others).append(record)
        persons = {r.key for r in people}
        identified = [k for k in persons if k.startswith(IDENTIFIED) and k not in self.identified]
        if identified:
            self._load_identified(identified)
        keys = [getattr(r, "person_key", None) for r in others]
        wanted = {k for k in keys if k is not None and k not in persons and k not in self.births}
        if wanted:
            self._load_births(wanted)
        known = self.births
        for record in people:
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(problem)
        for record, key in zip(others, keys, strict=True):
            if not final and key is not None and key not in known and key not in persons:
                self.deferred.append(record)
                out.waiting += 1
                continue
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(problem)
        return out

    def _convert_block(self, block: EventBlock, report: IngestReport, final: bool) -> _BlockBatch:
        out = _BlockBatch()
        births, today, vocab = self.births, self.today, self.vocab
        wanted = {e.person_key for e in block.events if e.person_key not in births}
        if wanted:
            self._load_births(wanted)
        targets = {}
        for code in {e.code for e in block.events}:
            mapping = vocab.map(block.system, code)
            table = DOMAIN_TABLES.get(mapping.domain_id or "", block.default_table)
            targets[code] = (mapping, table)
        waiting: list[BlockEvent] = []
        kept: dict[str, tuple[BlockEvent, str, Mapping]] = {}
        for e in block.events:
            birth = births.get(e.person_key)
            if birth is None:
                if final:
                    out.quarantine.append(_dangling(e))
                else:
                    waiting.append(e)
                continue
            mapping, table = targets[e.code]
            problem = _implausible(e, birth, today, table, mapping.concept_id)
            if problem:
                out.quarantine.append(Rejected(e.key, e.location, *problem, e.raw))
                continue
            if not mapping.concept_id:
                report.unmapped[f"{block.system}|{e.code}"] += 1
            if e.key in kept:
                out.superseded += 1
            kept[e.key] = (e, table, mapping)
        if waiting:
            self.deferred.append(EventBlock(block.system, block.default_table, waiting))
            out.waiting = len(waiting)
        by_table: dict[str, list[tuple[BlockEvent, str, Mapping]]] = {}
        for entry in kept.values():
            by_table.setdefault(entry[1], []).append(entry)
        for table, entries in by_table.items():
            events = [e for e, _, _ in entries]
            mappings = [m for _, _, m in entries]
            person_ids = [self._person_id(e.person_key) for e in events]
            columns = block_columns(self.system, table, events, mappings, person_ids, vocab)
            if "unit_concept_id" in columns:
                sent = zip(columns["unit_source_value"], columns["unit_concept_id"], strict=True)
                unread = sum(1 for unit, concept in sent if unit and not concept)
                if unread:
                    report.warnings[UNIT_UNREADABLE] += unread
            out.add_columns(table, columns, events)
        return out

    def _convert_one(
        self, record: SourceRecord, out: _Batch, report: IngestReport
    ) -> Rejected | None:
        if type(record) is SourceEvent:
            problem = self._event(record, out, report)
            if problem is None and record.warnings:
                report.warnings.update(record.warnings)
            return problem
        if isinstance(record, Rejected):
            return record
        if isinstance(record, Skipped):
            report.skipped += 1
            report.skipped_rules[record.rule] += 1
            return None
        if type(record) is SourcePerson and record.key in self.identified:
            self._same_person(record, report)
            return None
        warnings = getattr(record, "warnings", ())
        problem = self._convert_record(record, out)
        if problem is None and warnings:
            report.warnings.update(warnings)
        return problem

    def _convert_record(self, record: SourceRecord, out: _Batch) -> Rejected | None:
        if isinstance(record, SourcePerson):
            return self._person(record, out)
        if isinstance(record, SourceRow):
            return self._omop_row(record, out)
        assert not isinstance(record, (EventBlock, Rejected, Skipped, SourceEvent))
        birth = self.births.get(record.person_key)
        if birth is None:
            return _dangling(record)
        person_id = self._person_id(record.person_key)
        if isinstance(record, SourceMerge):
            if record.old_person_key not in self.births:
                self._load_births({record.old_person_key})
            if record.old_person_key not in self.births:
                if self._merged_away(record.old_person_key):
                    out.merged_before += 1
                    return None
                message = f"merges {record.old_person_key}, which is not in this source"
                return Rejected(
                    record.key, record.location, "reference.dangling", message, record.raw
                )
            out.merges.append((self._person_id(record.old_person_key), person_id))
            self.births.pop(record.old_person_key)
            return None
        problem = date_problem(record.start, birth, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        out.add(record, visit_row(self.system, record, person_id))
        return None

    def _event(self, record: SourceEvent, out: _Batch, report: IngestReport) -> Rejected | None:
        birth = self.births.get(record.person_key)
        if birth is None:
            return _dangling(record)
        person_id = self._person_id(record.person_key)
        row, mapped = event_row(self.system, record, person_id, self.vocab)
        concept_id = int(row.values.get("measurement_concept_id", 0))
        problem = _implausible(record, birth, self.today, row.table, concept_id)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        if not mapped:
            report.unmapped[f"{record.system}|{record.code}"] += 1
        if record.unit and row.values.get("unit_concept_id") == 0:
            report.warnings[UNIT_UNREADABLE] += 1
        out.add(record, row)
        return None

    def _person(self, record: SourcePerson, out: _Batch) -> Rejected | None:
        problem = birth_problem(record.birth_date, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        assert record.birth_date is not None
        if record.death_date is not None:
            problem = date_problem(record.death_date, record.birth_date, self.today)
            if problem:
                return Rejected(record.key, record.location, *problem, record.raw)
        self.births[record.key] = record.birth_date
        if record.key.startswith(IDENTIFIED):
            gender = GENDERS.get(record.gender or "", 0)
            self.identified[record.key] = (day(record.birth_date), gender)
        out.add(record, person_row(self.system, record))
        if record.death_date is not None:
            out.add(record, death_row(self.system, record))
        return None

    def _omop_row(self, record: SourceRow, out: _Batch) -> Rejected | None:
        values = dict(record.values)
        table = schema.metadata.tables[record.table]
        if record.table == "person":
            birth = date(
                int(values["year_of_birth"]),
                int(values.get("month_of_birth") or 1),
                int(values.get("day_of_birth") or 1),
            )
            problem = birth_problem(birth, self.today)
            if problem:
                return Rejected(record.key, record.location, *problem, record.raw)
            self.births[record.key] = birth
        elif record.person_key is not None:
            birth = self.births.get(record.person_key)
            if birth is None:
                return _dangling(record)
            dates = [
                c.name for c in table.columns if c.name.endswith("_date") and values.get(c.name)
            ]
            if dates:
                problem = date_problem(values[dates[0]], birth, self.today)
                if problem:
                    return Rejected(record.key, record.location, *problem, record.raw)
        primary = next(iter(table.primary_key.columns))
        for column, target in REFERENCES.items():
            if values.get(column) is not None and column != primary.name:
                values[column] = stable_id(self.system, target, f"{target}/{values[column]}")
        event = COST_DOMAINS.get(str(values.get("cost_domain_id")))
        if record.table == "cost" and event is not None:
            values["cost_event_id"] = stable_id(
                self.system, event, f"{event}/{values['cost_event_id']}"
            )
        target = REFERENCES.get(primary.name)
        row_id = stable_id(
            self.system,
            *(
                (target, f"{target}/{values[primary.name]}")
                if target and values.get(primary.name) is not None
                else (record.table, record.key)
            ),
        )
        values[primary.name] = row_id
        out.add(record, CdmRow(record.table, row_id, values))
        return None

    def know_persons_by_source_value(self, prefix: str) -> None:
        """Let records name a person already in the store as `prefix` + their source value.

        Sources that know a patient only by MRN (DICOM's PatientID) refer to persons
        another source loaded; an MRN no person carries is a dangling reference.
        """
        person = schema.person
        columns = (person.c.person_id, person.c.person_source_value, *_BIRTH)
        with self.store.connect() as conn:
            for pid, value, year, month, day in conn.execute(select(*columns)):
                if value:
                    self.births[prefix + value] = _born(year, month, day)
                    self.person_ids[prefix + value] = pid

    def _person_id(self, key: str) -> int:
        found = self.person_ids.get(key)
        if found is None:
            found = self.person_ids[key] = person_id(self.system, key)
        return found

    def _merged_away(self, key: str) -> bool:
        """Whether the person of `key` was loaded from this source and merged into another."""
        source, person = schema.source_record, schema.person
        with self.store.connect() as conn:
            ids = conn.execute(
                select(source.c.cdm_id)
                .where(source.c.source_system == self.system, source.c.record_key == key)
                .where(source.c.cdm_table == "person")
            ).scalars()
            return any(
                conn.execute(select(person.c.person_id).where(person.c.person_id == i)).first()
                is None
                for i in ids
            )

    def _same_person(self, record: SourcePerson, report: IngestReport) -> None:
        """Count a patient record of a person already loaded as skipped; warn when its
        birth date or gender contradict the person's."""
        report.skipped += 1
        report.skipped_rules[SAME_PERSON] += 1
        birth, gender = self.identified[record.key]
        theirs = GENDERS.get(record.gender or "", 0)
        if (record.birth_date and day(record.birth_date) != birth) or (
            gender and theirs and gender != theirs
        ):
            report.warnings[DEMOGRAPHICS_CONFLICT] += 1
            report.conflicts.append(
                f"{record.location}: {record.key} born {day(record.birth_date)}, gender "
                f"{record.gender or 'unknown'}; the person: born {birth}, gender concept {gender}"
            )

    def _load_identified(self, keys: list[str]) -> None:
        """Remember identified persons that another source system already stored."""
        ids = {person_id(self.system, k): k for k in keys}
        person, source = schema.person, schema.source_record
        with self.store.connect() as conn:
            with values_in(conn, person.c.person_id, list(ids)) as wanted:
                columns = (person.c.person_id, *_BIRTH, person.c.gender_concept_id)
                found = conn.execute(select(*columns).where(wanted)).all()
            if not found:
                return
            with values_in(conn, source.c.record_key, keys) as mine:
                own = set(
                    conn.execute(
                        select(source.c.record_key)
                        .where(source.c.source_system == self.system)
                        .where(source.c.cdm_table == "person")
                        .where(mine)
                    ).scalars()
                )
        for pid, year, month, day_, gender in found:
            key = ids[pid]
            if key not in own:
                born = _born(year, month, day_)
                self.identified[key] = (born, gender)
                self.births[key] = born

    def _load_births(self, keys: set[str]) -> None:
        ids = {person_id(self.system, k): k for k in keys}
        person = schema.person
        with self.store.connect() as conn, values_in(conn, person.c.person_id, list(ids)) as wanted:
            found = conn.execute(select(person.c.person_id, *_BIRTH).where(wanted)).all()
            for pid, year, month, day in found:
                self.births[ids[pid]] = _born(year, month, day)

    def _write(self, batch: _Batch, report: IngestReport) -> None:
        with self.store.begin() as conn:
            unchanged: set[str] = set()
            # A key an earlier batch of this run wrote: that record is superseded, not this
            # one unchanged (same content) nor loaded a second time (new content).
            again_same = again_new = 0
            for key, old in self._existing(conn, batch).items():
                earlier = any(run == report.run_id for *_, run in old)
                if all(digest == batch.sources[key][1] for _, _, digest, _ in old):
                    unchanged.add(key)
                    again_same += earlier
                    continue
                again_new += earlier
                for table, cdm_id, *_ in old:
                    _delete_row(conn, table, cdm_id)
            layout = batch.layout(self.system, report.run_id, unchanged)
            for name, columns in layout.tables.items():
                insert_columns(conn, schema.metadata.tables[name], columns)
                report.rows[name] += len(next(iter(columns.values())))
            insert_columns(conn, schema.source_record, layout.links)
            report.unchanged += len(unchanged) - again_same + batch.merged_before
            superseded = batch.superseded + again_same + again_new
            if superseded:
                report.skipped += superseded
                report.skipped_rules[SUPERSEDED] += superseded
            report.loaded += layout.records - again_new
            for old_id, new_id in batch.merges:
                _merge_person(conn, old_id, new_id)
                report.loaded += 1
            self._quarantine(conn, batch.quarantine, report)
            if self.derive_periods:
                _rebuild_observation_periods(conn, layout.person_ids)

    def _existing(
        self, conn: Connection, batch: _Batch
    ) -> dict[str, list[tuple[str, int, str, int]]]:
        """(table, id, content hash, ingest run) of the rows already stored for each record of
        the batch; a record stored earlier in this run is replaced by the batch's (superseded)."""
        provenance = schema.source_record
        existing: dict[str, list[tuple[str, int, str, int]]] = {}
        with values_in(conn, provenance.c.record_key, list(batch.sources)) as wanted:
            found = conn.execute(
                select(
                    provenance.c.record_key,
                    provenance.c.cdm_table,
                    provenance.c.cdm_id,
                    provenance.c.content_hash,
                    provenance.c.ingest_run_id,
                )
                .where(provenance.c.source_system == self.system)
                .where(wanted)
            ).all()
        for key, table, cdm_id, digest, run in found:
            existing.setdefault(key, []).append((table, cdm_id, digest, run))
        return existing

    def _quarantine(self, conn: Connection, rejected: list[Rejected], report: IngestReport) -> None:
        rows = []
        for r in rejected:
            rows.append(
                {
                    "quarantine_id": stable_id(self.system, r.location, r.rule, r.key or ""),
                    "ingest_run_id": report.run_id,
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
            ids = [r["quarantine_id"] for r in rows]
            with values_in(conn, table.c.quarantine_id, ids) as stale:
                conn.execute(delete(table).where(stale))
            bulk_insert(conn, table, rows)


#: The warning counted for a value whose unit FLIP cannot read (kept as sent, unit concept 0).
UNIT_UNREADABLE = "unit.unreadable"

#: A person's date of birth as the person table keeps it (month and day may be missing).
_BIRTH = (
    schema.person.c.year_of_birth,
    schema.person.c.month_of_birth,
    schema.person.c.day_of_birth,
)


def _born(year: int, month: int | None, day: int | None) -> date:
    return date(year, month or 1, day or 1)


def _implausible(
    event: SourceEvent | BlockEvent, birth: date, today: date, table: str, concept_id: int
) -> tuple[str, str] | None:
    """(rule, message) when an event's date, or a measurement's value or unit, is implausible."""
    problem = date_problem(event.start, birth, today)
    if problem is None and table == "measurement":
        problem = value_problem(concept_id, event.value, event.unit)
    return problem


def _dangling(record: SourceVisit | SourceEvent | BlockEvent | SourceRow | SourceMerge) -> Rejected:
    message = f"refers to {record.person_key}, which is not in this source"
    return Rejected(record.key, record.location, "reference.dangling", message, record.raw)


def _write_tallies(conn: Connection, report: IngestReport) -> None:
    """Keep the run's per-rule counts of skipped records and warnings, and its unmapped
    codes ("system|code", cut to the column's length), beside its counters."""
    tally = schema.ingest_tally
    conn.execute(delete(tally).where(tally.c.ingest_run_id == report.run_id))
    unmapped: Counter[str] = Counter()
    for code, count in report.unmapped.items():
        unmapped[code[: tally.c.rule.type.length]] += count
    rows = [
        {"ingest_run_id": report.run_id, "kind": kind, "rule": rule, "count": count}
        for kind, counter in (
            ("skipped", report.skipped_rules),
            ("warning", report.warnings),
            ("unmapped", unmapped),
        )
        for rule, count in counter.items()
    ]
    if rows:
        conn.execute(insert(tally), rows)


def _is_person(record: SourceRecord) -> bool:
    return isinstance(record, SourcePerson) or (
        isinstance(record, SourceRow) and record.table == "person"
    )


def _delete_row(conn: Connection, table_name: str, cdm_id: int) -> None:
    table = schema.metadata.tables[table_name]
    primary = next(iter(table.primary_key.columns))
    conn.execute(delete(table).where(primary == cdm_id))
    source = schema.source_record
    conn.execute(delete(source).where(source.c.cdm_table == table_name, source.c.cdm_id == cdm_id))


def _merge_person(conn: Connection, old_id: int, new_id: int) -> None:
    """Move every row of person `old_id` to `new_id`, then remove the old person; the old
    person's provenance stays, so that re-reading its records neither brings it back nor
    makes the merge dangle."""
    for name in schema.CLINICAL_TABLES:
        table = schema.metadata.tables[name]
        if name in ("person", "death", "observation_period") or "person_id" not in table.c:
            continue
        conn.execute(update(table).where(table.c.person_id == old_id).values(person_id=new_id))
    for name in ("person", "death", "observation_period"):
        table = schema.metadata.tables[name]
        conn.execute(delete(table).where(table.c.person_id == old_id))


def _rebuild_observation_periods(conn: Connection, person_ids: set[int]) -> None:
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


def ingest_path(
    store: Store,
    kind: str,
    path: Path,
    *,
    mapping: Path | None = None,
    url: str | None = None,
    schema_name: str | None = None,
    source_system: str | None = None,
    progress: Callable[[int], None] | None = None,
    code_systems: dict[str, str] | None = None,
    person_identifier: str | None = None,
    reading: Iterable[SourceRecord] | None = None,
) -> IngestReport:
    """Ingest FHIR (`fhir`) or HL7 v2 (`hl7v2`) files, DICOM, or tables through a mapping.

    `csv` reads the CSV/Parquet files a mapping names under the folder `path`
    (mapping default: PATH/mapping.yaml); `sql` runs the mapping's queries on
    `url`, with `path` the mapping file. `omop` reads an OMOP CDM (v5.3 or v5.4)
    export folder at `path`, or the database at `url` (tables in `schema_name`).
    `dicom` reads DICOM files under `path`, or a PACS's DICOMweb (QIDO-RS) root at `url`.
    `source_system` names the source for
    provenance and record identity; it defaults to the kind and the file or
    folder name, so moving files keeps identities. `code_systems` are the site's declared
    code system names, URIs or OIDs -> OMOP vocabulary_id (site.yaml `code_systems`).
    `person_identifier` (fhir) is the identifier system whose value makes a patient one
    person across resources and sources; `reading` (fhir) the records of `path` already
    being read (`fhir.read_path_ahead`).
    """
    from flip.data.sources import fhir, hl7v2, tabular
    from flip.data.sources.readahead import read_ahead

    vocabulary = Vocabulary.from_store(store).with_code_systems(code_systems or {})
    if kind in ("fhir", "hl7v2"):
        if kind == "hl7v2":
            records = hl7v2.read_path(path)
        else:
            records = reading if reading is not None else fhir.read_path(path, person_identifier)
        ingestor = Ingestor(store, vocabulary, source_system or f"{kind}:{path.name}")
        return ingestor.run(records, kind=kind, uri=str(path), progress=progress)
    if kind == "dicom":
        from flip.data.sources import dicom, dicomweb

        if url:
            records, where = dicomweb.read_server(url), url.rstrip("/")
            name = source_system or f"dicomweb:{where}"
        else:
            records, where = dicom.read_path(path), str(path)
            name = source_system or f"dicom:{path.name}"
        ingestor = Ingestor(store, vocabulary, name)
        ingestor.know_persons_by_source_value(dicom.MRN_PREFIX)
        return ingestor.run(records, kind=kind, uri=where, progress=progress)
    if kind == "omop":
        from flip.data.sources import omop

        name = source_system or f"omop:{path.name if path else 'database'}"
        ingestor = Ingestor(store, vocabulary, name, derive_periods=False)
        if url:
            engine = create_engine(url)
            try:
                records = omop.read_database(engine, schema_name)
                where = engine.url.render_as_string(hide_password=True)
                return ingestor.run(records, kind=kind, uri=where, progress=progress)
            finally:
                engine.dispose()
        return ingestor.run(omop.read_folder(path), kind=kind, uri=str(path), progress=progress)
    if kind in ("csv", "sql"):
        spec = tabular.TableMapping.load(
            mapping or (path / "mapping.yaml" if kind == "csv" else path)
        )
        vocabulary = vocabulary.with_local_codes(spec.local_codes)
        ingestor = Ingestor(store, vocabulary, source_system or f"{kind}:{spec.source}")
        known = vocabulary.unit
        if kind == "csv":
            spec = spec.check(folder=path, unit_known=known)
            records = read_ahead(tabular.read_tables, spec, path)
            return ingestor.run(records, kind=kind, uri=str(path), progress=progress)
        if not url:
            raise ValueError("a sql source needs --url (any SQLAlchemy database URL)")
        engine = create_engine(url)
        try:
            spec = spec.check(engine=engine, unit_known=known)
            records = tabular.read_tables(spec, engine=engine)
            where = engine.url.render_as_string(hide_password=True)
            return ingestor.run(records, kind=kind, uri=where, progress=progress)
        finally:
            engine.dispose()
    raise ValueError(f"unknown source kind {kind!r}: expected fhir, hl7v2, csv, sql, omop or dicom")


def ingest_fhir_server(
    store: Store,
    base_url: str,
    *,
    bulk: bool = False,
    incremental: bool = True,
    source_system: str | None = None,
    headers: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    code_systems: dict[str, str] | None = None,
    person_identifier: str | None = None,
) -> IngestReport:
    """Ingest from a FHIR server by paged search, or by Bulk Data `$export` when `bulk`.

    With `incremental`, only what changed since the last successful run is asked
    for (the server's `_lastUpdated` / `_since`); the new high-water mark is saved
    only when the run completes.
    """
    import httpx

    from flip.data.sources import fhir_rest

    system = source_system or f"fhir:{base_url.rstrip('/')}"
    state = schema.source_state
    with store.connect() as conn:
        since = (
            conn.execute(
                select(state.c.value).where(
                    state.c.source_system == system, state.c.name == "since"
                )
            ).scalar_one_or_none()
            if incremental
            else None
        )
    watermark = fhir_rest.Watermark()
    reader = fhir_rest.bulk_export if bulk else fhir_rest.search
    vocabulary = Vocabulary.from_store(store).with_code_systems(code_systems or {})
    ingestor = Ingestor(store, vocabulary, system)
    with httpx.Client(timeout=60.0, headers=headers or {}, follow_redirects=True) as client:
        records = reader(
            client,
            base_url,
            since=since,
            watermark=watermark,
            person_identifier=person_identifier,
        )
        report = ingestor.run(
            records, kind="fhir-bulk" if bulk else "fhir-search", uri=base_url, progress=progress
        )
    if watermark.value and incremental:
        with store.begin() as conn:
            conn.execute(
                delete(state).where(state.c.source_system == system, state.c.name == "since")
            )
            conn.execute(
                insert(state).values(source_system=system, name="since", value=watermark.value)
            )
    return report
