"""Batches: records grouped for one commit, and their rows laid out column by column."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial

from flip.data.cdm import schema
from flip.data.cdm.rows import CdmRow
from flip.data.cdm.store import row_columns
from flip.data.ingest.clean import scrub
from flip.data.sources.records import (
    BlockEvent,
    EventBlock,
    Rejected,
    SourceEvent,
    SourceMerge,
    SourcePerson,
    SourceRecord,
    SourceRow,
    SourceVisit,
    Unread,
    same_resource,
)

#: Records per batch: each batch commits whole.
BATCH_SIZE = 20000


def batches(
    records: Iterable[SourceRecord], size: int = BATCH_SIZE
) -> Iterator[list[SourceRecord]]:
    """Group records into lists of `size` (more when the records of one resource would
    straddle the cut: see `same_resource`); an EventBlock is a batch on its own."""
    batch: list[SourceRecord] = []
    for record in records:
        if type(record) is EventBlock:
            if batch:
                yield batch
                batch = []
            yield [record]
            continue
        if len(batch) >= size and not same_resource(batch[-1], record):
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch


def count_records(records: list[SourceRecord]) -> int:
    """How many source records a batch holds (an EventBlock counts each of its events; a
    note of an unread file counts none)."""
    return sum(len(r) if type(r) is EventBlock else type(r) is not Unread for r in records)


class Batch:
    """The rows, provenance, merges and quarantine entries of one batch, before writing."""

    def __init__(self) -> None:
        self.rows: dict[str, list[CdmRow]] = {}
        self.owners: dict[str, SourceRecord] = {}
        self.sources: dict[str, tuple[str, str]] = {}
        #: (old person id, surviving person id, the merge record) per merge.
        self.merges: list[tuple[int, int, SourceMerge]] = []
        self.quarantine: list[Rejected] = []
        self.versions: dict[str, str] = {}
        self.replaced: set[str] = set()
        #: Records left out as older than the batch's copy, by id (held, so that no later
        #: record takes the id of one freed: a copy made while mapping is freed at once).
        self.dropped: dict[int, SourceRecord] = {}
        self.waiting = 0
        self.superseded = 0
        self.merged_before = 0
        #: source_record rows (role CONFIRMS) of records naming a person another source
        #: system produced, by record key.
        self.confirmations: dict[str, dict[str, object]] = {}
        #: Keys of records re-sent as not facts (entered in error, refuted, cancelled),
        #: with the version of the withdrawing record.
        self.withdrawn: dict[str, str | None] = {}
        #: The rule of each of those (entered in error…).
        self.withdrawal_rules: dict[str, str] = {}
        #: Keys of those whose fact was earlier in this batch.
        self.withdrawn_here: set[str] = set()
        #: Keys of those whose record says an earlier version was sent (`Skipped.amends`).
        self.amending: set[str] = set()
        #: Per resource read as several records (`SourceEvent.whole`): the raw resource
        #: its records in the batch came from, and their keys.
        self.wholes: dict[str, tuple[bytes, set[str]]] = {}
        #: The keys of parts (`key#…`) by the key of each record they are part of: a
        #: withdrawal finds them without scanning the batch.
        self.parts: dict[str, set[str]] = {}
        #: Discharges naming no visit that fitted no open visit: kept to wait for it; and
        #: cancel-discharges naming no visit, kept for the discharges they cancel.
        self.pending: list[SourceVisit] = []
        #: Keys of the kept cancel-discharges of `pending` spent on a discharge that gave no
        #: admission time: they cancel nothing more.
        self.spent: set[str] = set()
        #: Keys of the discharges of `pending` giving no admission time that ended a
        #: visit: kept for a later admission to take over (discharges.ENDED).
        self.ended: set[str] = set()
        #: Keys of discharges that ended their visit: no longer waiting.
        self.applied: set[str] = set()
        #: Discharges kept by earlier batches or runs that ended their visit in this batch
        #: (each read again), and the visit key each ended: the facts filed under the
        #: discharge's own key are filed under that visit.
        self.recalled = 0
        self.relinks: dict[str, str] = {}
        #: Keys of stored visits whose stored version counts as their admission's only (a
        #: full re-export's, that a kept cancel-discharge it replaces opened again: see
        #: DischargeMatching._reopened_stays).
        self.provisional: set[str] = set()

    def withdraw(
        self, key: str, version: str | None = None, amends: bool = False, rule: str = ""
    ) -> bool:
        """Withdraw the record of `key` and its parts (keys `key#…`) as of `version`: an
        earlier copy in this batch is superseded, and the rows earlier batches or runs
        stored for them are removed when written; a newer version is kept. `amends` when
        the withdrawing record says an earlier version was sent; `rule` is the one that
        withdrew it. False when the batch holds a newer version (the withdrawal is
        superseded, counted here)."""
        parts = [k for k in (key, *self.parts.get(key, ())) if k in self.rows]
        if any(older(version, admission_version(self.versions.get(p))) for p in parts):
            self.superseded += 1
            return False
        for part in parts:
            self._drop(part)
        if parts:
            self.withdrawn_here.add(key)
        self.wholes.pop(key, None)
        self.withdrawn[key] = version
        self.withdrawal_rules[key] = rule
        if amends:
            self.amending.add(key)
        else:
            self.amending.discard(key)
        return True

    def _index_parts(self, key: str) -> None:
        """Note `key` as a part of each record whose key ends before one of its `#`s."""
        at = key.find("#")
        while at != -1:
            self.parts.setdefault(key[:at], set()).add(key)
            at = key.find("#", at + 1)

    def _drop(self, key: str) -> None:
        """Leave out the batch's record of `key` (superseded by a later one)."""
        del self.rows[key], self.owners[key], self.sources[key]
        self.versions.pop(key, None)
        self.superseded += 1

    def _take_whole(self, record: SourceEvent, whole: str, version: str | None) -> bool:
        """Note `record` as a part of the resource `whole`; a later version of the resource
        supersedes every record the earlier one gave in the batch. False when the batch
        holds a newer version (the record is then dropped)."""
        held = self.wholes.get(whole)
        if held is not None and held[0] is not record.raw:
            earlier = next((self.owners[k] for k in held[1] if k in self.owners), None)
            if older(version, getattr(earlier, "version", None)):
                self.superseded += 1
                self.dropped[id(record)] = record
                return False
            for key in held[1]:
                if key in self.rows:
                    self._drop(key)
            held = None
        if held is None:
            held = self.wholes[whole] = (record.raw, set())
        held[1].add(record.key)
        return True

    def confirm(self, record: SourcePerson, table: str, cdm_id: int) -> None:
        """Trace `record` (counted as skipped) to the row of another source it names."""
        self.confirmations[record.key] = {
            "cdm_table": table,
            "cdm_id": cdm_id,
            "record_key": record.key,
            "location": record.location,
            "content_hash": hashlib.sha256(record.raw).hexdigest(),
            "source_version": getattr(record, "version", None),
            "role": schema.CONFIRMS,
        }

    def add(
        self, record: SourcePerson | SourceVisit | SourceEvent | SourceRow, row: CdmRow
    ) -> None:
        """Add a row of `record`; a later record with the same key replaces an earlier one,
        unless their versions say the earlier one is newer (then the later one is dropped,
        as is one older than a withdrawal of its key earlier in the batch)."""
        owner = self.owners.get(record.key)
        if owner is not record:
            if id(record) in self.dropped:
                return
            version = getattr(record, "version", None)
            if older(admission_version(version), self.withdrawn.get(record.key)):
                self.superseded += 1
                self.withdrawn_here.add(record.key)
                self.dropped[id(record)] = record
                return
            whole = getattr(record, "whole", None)
            if whole is not None:
                if not self._take_whole(record, whole, version):
                    return
                owner = self.owners.get(record.key)
            if owner is not None:
                self.superseded += 1
                if older(version, getattr(owner, "version", None)):
                    self.dropped[id(record)] = record
                    return
            self.owners[record.key] = record
            self.rows[record.key] = []
            self._index_parts(record.key)
            replaces = getattr(record, "replaces", None)
            if replaces is not None:
                self.replaced.add(replaces)
            if version is not None:
                self.versions[record.key] = version
            else:
                self.versions.pop(record.key, None)
        self.rows[record.key].append(row)
        self.sources[record.key] = (record.location, hashlib.sha256(record.raw).hexdigest())

    def layout(self, system: str, run_id: int, skip: Collection[str] = ()) -> Layout:
        """The batch column by column, leaving out the records in `skip`."""
        kept = [key for key in self.rows if key not in skip]
        flat = [(key, row) for key in kept for row in self.rows[key]]
        by_table: dict[str, list[dict[str, object]]] = {}
        for _, row in flat:
            by_table.setdefault(row.table, []).append(row.values)
        tables = {
            name: row_columns(schema.metadata.tables[name], rows) for name, rows in by_table.items()
        }
        links = provenance_links(
            self.sources,
            [row.table for _, row in flat],
            [row.id for _, row in flat],
            [key for key, _ in flat],
            system,
            run_id,
        )
        owners = self.owners
        links["person_key"] = [getattr(owners[key], "person_key", None) for key, _ in flat]
        links["source_version"] = [self.versions.get(key) for key, _ in flat]
        return Layout.of(tables, links, len(kept), self.merges)


class BlockBatch(Batch):
    """The batch of one EventBlock: its rows already laid out column by column per table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[dict[str, list[object]], list[str]]] = {}
        self.person_keys: dict[str, str] = {}

    def add_columns(
        self, table: str, columns: dict[str, list[object]], events: list[BlockEvent]
    ) -> None:
        """Add the rows of `events` (all landing in `table`) as columns."""
        keys = [e.key for e in events]
        self.tables[table] = (columns, keys)
        self.person_keys.update(zip(keys, [e.person_key for e in events], strict=True))
        sha256 = hashlib.sha256
        located = [(e.location, sha256(e.raw).hexdigest()) for e in events]
        self.sources.update(zip(keys, located, strict=True))

    def layout(self, system: str, run_id: int, skip: Collection[str] = ()) -> Layout:
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
        links = provenance_links(self.sources, names, ids, keys, system, run_id)
        links["person_key"] = [self.person_keys[key] for key in keys]
        return Layout.of(tables, links, len(keys), self.merges)


def provenance_links(
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


#: Between the version of a visit that a discharge naming no visit ended (the discharge's)
#: and the version of its admission (see `with_admission`).
ADMISSION = " admitted "


def with_admission(version: str | None, admission: str | None) -> str | None:
    """The version of a visit a discharge of `version` ended, carrying the version of the
    visit it ended (`admission`): a cancel of the admission (HL7 A11) compares with that."""
    admitted = admission_version(admission)
    if version is None or admitted is None:
        return version
    return f"{version.partition(ADMISSION)[0]}{ADMISSION}{admitted}"


def admission_version(version: str | None) -> str | None:
    """The version a withdrawal of a record compares with: for a visit a discharge ended
    (`with_admission`), its admission's; else the record's own."""
    if version is None:
        return None
    return version.partition(ADMISSION)[2] or version


def older(version: str | None, than: str | None) -> bool:
    """Whether a record version (`number|when`, as fhir.version_of writes it) is older than
    another: by number when both numbers are digits and differ (a versionId is otherwise
    opaque: a UUID or an ETag says nothing of order), else by time when both have one;
    never when either has none or they cannot be compared. A visit's admission version
    (`with_admission`) takes no part."""
    if version is None or than is None:
        return False
    version, than = version.partition(ADMISSION)[0], than.partition(ADMISSION)[0]
    number, _, when = version.partition("|")
    other, _, other_when = than.partition("|")
    if number != other and number.isdigit() and other.isdigit():
        return (len(number), number) < (len(other), other)
    return bool(when and other_when) and when < other_when


def salted(digest: str, interpretation: str) -> str:
    """A record's content hash joined with the settings it was read with."""
    return hashlib.sha256(f"{interpretation}\x1f{digest}".encode()).hexdigest()


@dataclass
class Layout:
    """A batch's rows as columns per table, with their provenance links, ready to insert."""

    tables: dict[str, dict[str, list[object]]]
    links: dict[str, list[object]]
    records: int
    person_ids: set[int]
    nul_rows: int = 0

    @classmethod
    def of(
        cls,
        tables: dict[str, dict[str, list[object]]],
        links: dict[str, list[object]],
        records: int,
        merges: list[tuple[int, int, SourceMerge]],
    ) -> Layout:
        """A layout whose touched persons are those of its rows and of its merges (and
        unlinks), its text without NUL characters (`clean.scrub`)."""
        persons = {pid for old, new, _ in merges for pid in (old, new)}
        nul_rows = 0
        for name, columns in tables.items():
            persons.update(pid for pid in columns.get("person_id", ()) if pid)
            nul_rows += scrub(name, columns)
        return cls(tables, links, records, persons, nul_rows)


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


def versioned(problem: Rejected, record: SourceRecord) -> Rejected:
    """The quarantine entry of `record`, with the record's version (see Rejected.version)."""
    version = getattr(record, "version", None)
    if problem.version is not None or version is None or problem.key != record.key:
        return problem
    return replace(problem, version=version)
