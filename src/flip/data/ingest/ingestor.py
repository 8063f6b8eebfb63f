"""One ingest run of one source system: map each batch, then commit it whole.

Each batch commits whole or not at all. A record whose patient has not been seen yet
waits for the end of the run, so files and entries may come in any order; so does a
discharge naming no visit that fits no open visit of its patient (see discharges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from flip.data.cdm.store import Store
from flip.data.ingest.batch import Batch, batches, count_records, young_collections_only
from flip.data.ingest.clean import scrub_text
from flip.data.ingest.convert import Converter
from flip.data.ingest.prune import (
    PRUNE_REFUSED,
    PRUNE_REFUSED_UNREAD,
    prune,
    prune_kept_discharges,
)
from flip.data.ingest.report import IngestReport, restored_on_error
from flip.data.ingest.write import Writer
from flip.data.sources.records import EventBlock, Rejected, SourceRecord, Unread
from flip.data.terminology.vocabulary import Vocabulary


class Ingestor:
    """Writes records from one source system into a store, in one ingest run.

    `start()`, then `write()` batch by batch (each commits whole), then `finish()`;
    `run()` does all three for an iterable of records. With `prune`, a completed run then
    removes what earlier runs of the source system loaded and this one did not read;
    with `prune_from` too, only what runs that read that location (source_uri) loaded.
    `interpretation` names the reading settings that change what records mean (e.g.
    "date_order=dmy"): a record read with other settings is mapped again, not unchanged.
    """

    def __init__(
        self,
        store: Store,
        vocabulary: Vocabulary,
        source_system: str,
        derive_periods: bool = True,
        *,
        prune: bool = False,
        prune_from: str | None = None,
        interpretation: str = "",
    ) -> None:
        self.converter = Converter(store, vocabulary, source_system)
        self.converter.interpretation = interpretation
        self.writer = Writer(store, source_system, derive_periods, interpretation)
        self.report: IngestReport | None = None
        self.seen: set[str] | None = set() if prune else None
        self.prune_from = prune_from
        self.converter.pruning, self.converter.prune_from = prune, prune_from
        self.unkeyed = 0
        self.failed_reads = 0

    @property
    def store(self) -> Store:
        """The store the run reads and writes."""
        return self.writer.store

    @store.setter
    def store(self, store: Store) -> None:
        """Point the run at another handle of the store (e.g. one opened per message)."""
        self.converter.store = self.writer.store = store

    def start(self, kind: str, uri: str) -> IngestReport:
        """Open an ingest run."""
        self.report = self.writer.open_run(kind, uri)
        return self.report

    def write(self, records: list[SourceRecord], *, final: bool = False) -> list[Rejected]:
        """Commit one batch whole; return what it quarantined.

        A record whose patient is unknown waits for `finish()` unless `final` is set,
        in which case it is a dangling reference.
        """
        report = self._require_run()
        if self.seen is not None:
            self.seen.update(_keys(records))
            self.unkeyed += sum(type(r) is Rejected and r.key is None for r in records)
            self.failed_reads += sum(type(r) is Unread and r.failed for r in records)
        with restored_on_error(report), self.converter.undone_on_error():
            batch = self.converter.convert(records, report, final)
            self.writer.write(batch, report)
        report.read += count_records(records) - batch.waiting + batch.recalled
        return batch.quarantine

    def finish(self, status: str = "completed") -> IngestReport:
        """Resolve waiting records, then close the run with its counts."""
        report = self._require_run()
        try:
            if self._prunes(status) and report.read:
                writer, seen = self.writer, self.seen or set()
                prune_kept_discharges(writer.store, writer.system, seen, report, self.prune_from)
                self.converter.pending, self.converter.pending_looked = {}, set()
            waiting, self.converter.deferred = self.converter.deferred, []
            self.converter.deferred_keys = set()
            for batch in batches(waiting):
                converted = self.converter.convert(batch, report, final=True)
                self.writer.write(converted, report)
                report.read += count_records(batch) + converted.recalled
            self._recall(report)
            if self.seen is not None and status == "completed":
                writer = self.writer
                if self.unkeyed or self.failed_reads:
                    if self.unkeyed:
                        report.warnings[PRUNE_REFUSED] += self.unkeyed
                    if self.failed_reads:
                        report.warnings[PRUNE_REFUSED_UNREAD] += self.failed_reads
                else:
                    prune(
                        writer.store,
                        writer.system,
                        self.seen,
                        report,
                        writer.derive_periods,
                        location=self.prune_from,
                    )
        except BaseException:
            status = "failed"
            raise
        finally:
            self.writer.close_run(report, status)
        return report

    def _prunes(self, status: str) -> bool:
        """Whether the run prunes when it ends: asked, completing, and every record keyed."""
        return (
            self.seen is not None
            and status == "completed"
            and not self.unkeyed
            and not self.failed_reads
        )

    def _recall(self, report: IngestReport) -> None:
        """End the waiting discharges (see discharges) of the patients whose visits the run
        read, each where an open visit now fits it; each counts as read."""
        recalled = Batch()
        with self.converter.undone_on_error():
            self.converter.recall(recalled, report, self.converter.run_persons())
            if recalled.recalled:
                self.writer.write(recalled, report)
                report.read += recalled.recalled

    def run(
        self,
        records: Iterable[SourceRecord],
        *,
        kind: str,
        uri: str,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Ingest every record; return the report. Bad records are quarantined, not fatal.
        A DuckDB store checkpoints once, as the run closes, not every batch or two in
        between (`Store.fewer_checkpoints`)."""
        self.start(kind, uri)
        with young_collections_only() as collect:
            try:
                with self.store.fewer_checkpoints():
                    for batch in batches(records):
                        self.write(batch)
                        if progress:
                            progress(count_records(batch))
                        collect()
            except BaseException:
                self.finish("failed")
                raise
            return self.finish()

    def know_persons_by_source_value(self, prefix: str) -> None:
        """Let records name a person already in the store as `prefix` + their source value
        (see `Converter.know_persons_by_source_value`)."""
        self.converter.know_persons_by_source_value(prefix)

    def _require_run(self) -> IngestReport:
        if self.report is None:
            raise RuntimeError("call start() before write() or finish()")
        return self.report


def _keys(records: list[SourceRecord]) -> Iterator[str]:
    """The record keys of a batch (each event's of an EventBlock), as the store keeps them
    (without NUL: see clean)."""
    for record in records:
        if type(record) is EventBlock:
            yield from (scrub_text(e.key) for e in record.events)
        else:
            key = getattr(record, "key", None)
            if key is not None:
                yield scrub_text(key)
