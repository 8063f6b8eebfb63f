"""The map stage of an ingest: source records to CDM rows, with identity and plausibility.

Codes map to standard concepts by domain, values and units are harmonised, persons are
known by their key (or business identifier), and each record ends as rows of a batch,
a quarantine entry, a skip counted by rule, or a wait for its patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime

from sqlalchemy import Connection, select

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
from flip.data.cdm.store import Store, values_in
from flip.data.ingest.batch import (
    Batch,
    BlockBatch,
    admission_version,
    older,
    versioned,
)
from flip.data.ingest.clean import NUL, checked, checked_event
from flip.data.ingest.matching import DischargeMatching, KnownVisit, admits
from flip.data.ingest.report import (
    DEMOGRAPHICS_CONFLICT,
    DISCHARGE_CANCELLED,
    DISCHARGE_UNMATCHED,
    MERGED_AWAY,
    SAME_PERSON,
    UNIT_UNREADABLE,
    VISIT_MISSING,
    IngestReport,
)
from flip.data.sources.records import (
    AGE_DATE,
    MAX_KEY,
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
    aged,
)
from flip.data.terminology.units import Harmonised
from flip.data.terminology.vocabulary import Mapping, Vocabulary
from flip.data.validate.plausibility import (
    birth_problem,
    date_problem,
    value_bounds,
    value_problem,
)

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


class Converter(DischargeMatching):
    """Maps the records of one source system to CDM rows, batch by batch, over one run.

    It remembers each patient's birth date (to check the dates of their facts) and
    person id, and keeps the records whose patient has not been seen yet in `deferred`.
    Discharges naming no visit are matched to their stays by `DischargeMatching`.
    """

    def __init__(self, store: Store, vocabulary: Vocabulary, source_system: str) -> None:
        self.store = store
        self.vocab = vocabulary
        self.system = source_system
        self.births: dict[str, date] = {}
        self.person_ids: dict[str, int] = {}
        self.identified: dict[str, tuple[date, int]] = {}
        #: Identified persons another source system produced (this one confirms them).
        self.elsewhere: set[str] = set()
        #: Retired patient keys (merged into another person) and their survivor's person_id.
        self.retired: dict[str, int] = {}
        #: Retired patient keys and their survivor's key, under which the discharges and
        #: cancel-discharges kept for them wait (see `_kept_key`, discharges.adopt).
        self.survivor_keys: dict[str, str] = {}
        #: Whether the store holds retired patient keys (None: not looked yet).
        self.any_retired: bool | None = None
        #: Keys of records withdrawn (entered in error…), by this run or (looked up) an
        #: earlier one, with the rule: a fact naming one as its patient is told so when it
        #: dangles.
        self.withdrawn: dict[str, str] = {}
        #: Per patient key this run loaded, or whose stored person an update needed: (birth
        #: date, its parts, gender, death date), which an update's unsaid fields keep.
        self.demographics: dict[str, Demographics] = {}
        #: Per patient key, the visits this run converted: key -> (start, ended, version),
        #: over what the store holds (see `_known_visits`).
        self.run_visits: dict[str, dict[str, KnownVisit]] = {}
        #: Discharges naming no visit that wait for an open visit they fit (see
        #: discharges), by patient key then record key; the patients looked up, and whether
        #: the source keeps any (None: not looked yet).
        self.pending: dict[str, dict[str, SourceVisit]] = {}
        self.pending_looked: set[str] = set()
        self.any_pending: bool | None = None
        #: Discharges giving no admission time that ended a visit (kept, kind ended), by
        #: patient key then record key: a later admission may take them over (`_moved`).
        self.moving: dict[str, dict[str, SourceVisit]] = {}
        #: Keys of kept discharges of kind ended that end no stored visit any more (the stay
        #: was cancelled, or another message opened it again): forgotten with the batch.
        self.resolved: set[str] = set()
        #: The cancel-discharges (HL7 A13 naming no visit) kept or read by this run, by
        #: patient key then record key.
        self.cancels: dict[str, dict[str, SourceVisit]] = {}
        #: Keys of those spent on a discharge that gave no admission time (one that reopened
        #: a stay or dropped a discharge giving one is kept as of that admission).
        self.spent: set[str] = set()
        #: With a full re-export (prune; its location or None): the kept cancel-discharges
        #: it replaces are not applied (those it still holds are read again).
        self.pruning = False
        self.prune_from: str | None = None
        self.replaced: set[str] | None = None
        #: With a full re-export: the stored visits those kept cancel-discharges opened
        #: again (None: not looked yet; see `_reopened_stays`).
        self.reopened_stays: set[str] | None = None
        #: The discharges naming no visit of the batch, by patient key: a cancel-discharge
        #: naming no admission cancels the latest it fits.
        self.batch_discharges: dict[str, list[SourceVisit]] = {}
        #: Keys of discharges left to wait for the end of the run (their facts wait too).
        self.waiting_discharges: set[str] = set()
        #: The reading settings salting content hashes (see Writer.interpretation).
        self.interpretation = ""
        #: The stored visits that discharges of the batch ended before, by (patient key,
        #: content hash) of the discharge; the hashes looked up.
        self.ended_by: dict[tuple[str, str], str] = {}
        self.ended_looked: set[str] = set()
        #: The content hashes of `ended_by`, whoever the patient.
        self.ending_digests: set[str] = set()
        #: Per patient, their visits the store held when the batch began (see
        #: `_known_visits`).
        self.stored_visits: dict[str, dict[str, KnownVisit]] = {}
        #: The last discharge `_discharge_waits` matched, and the visit record it gives.
        self.ending: tuple[SourceVisit, SourceVisit] | None = None
        #: Keys of visits that ended an open visit of their patient -> that visit's key.
        self.rekeyed: dict[str, str] = {}
        #: Visit keys this source stored (this run or before), and those looked up in vain.
        self.visits: set[str] = set()
        self.no_visits: set[str] = set()
        self.deferred: list[SourceRecord] = []
        #: The record keys (and resources, `SourceEvent.whole`) of the deferred records.
        self.deferred_keys: set[str] = set()
        self.today = datetime.now(UTC).date()

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """Forget what mapping a batch taught the converter (persons, merges, records left
        waiting) when the batch is then not written, so that its records, sent again, map
        as they did the first time."""
        saved = (
            dict(self.births),
            dict(self.person_ids),
            dict(self.identified),
            set(self.elsewhere),
            dict(self.retired),
            self.any_retired,
            len(self.deferred),
            set(self.deferred_keys),
            dict(self.withdrawn),
            dict(self.demographics),
            {k: dict(v) for k, v in self.run_visits.items()},
            dict(self.rekeyed),
            set(self.visits),
            {k: dict(v) for k, v in self.pending.items()},
            set(self.pending_looked),
            set(self.waiting_discharges),
            {k: dict(v) for k, v in self.cancels.items()},
            set(self.spent),
            dict(self.survivor_keys),
            {k: dict(v) for k, v in self.moving.items()},
        )
        try:
            yield
        except BaseException:
            self.births, self.person_ids, self.identified, self.elsewhere = saved[:4]
            self.retired, self.any_retired = saved[4:6]
            del self.deferred[saved[6] :]
            self.deferred_keys, self.withdrawn, self.demographics = saved[7:10]
            self.run_visits, self.rekeyed, self.visits = saved[10:13]
            self.pending, self.pending_looked, self.waiting_discharges = saved[13:16]
            self.cancels, self.spent, self.survivor_keys, self.moving = saved[16:20]
            self.no_visits.clear()
            self.ended_by, self.ended_looked, self.ending = {}, set(), None
            self.ending_digests, self.resolved = set(), set()
            self.stored_visits = {}
            raise

    def convert(self, records: list[SourceRecord], report: IngestReport, final: bool) -> Batch:
        """Map one batch of records to CDM rows; records whose patient is still unknown wait
        in `deferred` unless `final`, when they are dangling references."""
        if records and type(records[0]) is EventBlock:
            block = records[0]
            if block.default_table in ("note", "image_occurrence"):
                return self.convert(block.records(), report, final)
            return self._convert_block(block, report, final)
        out = Batch()
        out.provisional = self._reopened_stays()
        self.stored_visits = {}
        people: list[SourceRecord] = []
        others: list[SourceRecord] = []
        for record in records:
            record = checked(record)
            if type(record) is Unread:
                report.unread[record.location] = record.reason
                continue
            (people if _is_person(record) else others).append(record)
        persons = {r.key for r in people}
        self._load_retired(persons - self.births.keys() - self.retired.keys())
        identified = [k for k in persons if k.startswith(IDENTIFIED) and k not in self.identified]
        if identified:
            self._load_identified(identified)
        updates = {r.key for r in people if getattr(r, "unsaid", None)}
        if updates - self.demographics.keys():
            self._load_demographics(updates - self.demographics.keys())
        self._load_visits(others)
        self._load_ended([r for r in others if type(r) is SourceVisit and r.open_visit])
        self.batch_discharges = {}
        for record in others:
            if type(record) is SourceVisit and record.open_visit and not record.cancels:
                self.batch_discharges.setdefault(record.person_key, []).append(record)
        for record in people:
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(versioned(problem, record))
        # a patient whose record was quarantined may be in the store: its facts file there
        keys = [getattr(r, "person_key", None) for r in others]
        wanted = {k for k in keys if k is not None and k not in self.births}
        if wanted:
            self._load_births(wanted)
        admitted = {self._kept_key(r.person_key) for r in others if admits(r)}
        if admitted:
            self._with_pending(admitted)  # what a later admission may take over: `_moved`
        known = self.births
        later: list[SourceRecord] = []  # discharges (and their facts) after the admissions
        for record, key in zip(others, keys, strict=True):
            waits = key is not None and key not in known and key not in persons
            if not final and (waits or self._withdraws_waiting(record)):
                self._defer(record, out)
                continue
            if not final and self._discharge_waits(record, first=True):
                later.append(record)
                continue
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(versioned(problem, record))
        for record in later:  # still fitting no open visit: wait for the end of the run
            if type(record) is SourceVisit:
                self.waiting_discharges.discard(record.key)
            if self._discharge_waits(record):
                self._defer(record, out)
                continue
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(versioned(problem, record))
        if final:
            self.recall(out, report, {r.person_key for r in others if type(r) is SourceVisit})
        self._forget_resolved(out)
        return out

    def _defer(self, record: SourceRecord, out: Batch) -> None:
        """Leave `record` to wait for the end of the run."""
        self.deferred.append(record)
        self.deferred_keys.update(_keys_of(record))
        out.waiting += 1

    def _withdraws_waiting(self, record: SourceRecord) -> bool:
        """Whether `record` withdraws a record that waits for its patient: it then waits
        too, so that the later copy still wins."""
        return type(record) is Skipped and record.withdraws and record.key in self.deferred_keys

    def run_persons(self) -> set[str]:
        """The patients whose visits this run converted."""
        return set(self.run_visits)

    def _convert_block(self, block: EventBlock, report: IngestReport, final: bool) -> BlockBatch:
        """Map a block column by column: each distinct person, code and (concept, unit) is
        looked up once, and each event is screened against those; an event the screen
        doubts is judged by the record-by-record rules (`_implausible`), which name it."""
        out = BlockBatch()
        found: list[tuple[int, Rejected]] = []  # quarantined, by place in the block
        events, places = _checked_keys(block.events, found)
        births, today, vocab = self.births, self.today, self.vocab
        persons = {e.person_key for e in events}
        wanted = {p for p in persons if p not in births}
        if wanted:
            self._load_births(wanted)
        born = {p: day(births.get(p)) for p in persons}
        targets = {}
        for code in {e.code for e in events}:
            mapping = vocab.map(block.system, code)
            table = DOMAIN_TABLES.get(mapping.domain_id or "", block.default_table)
            targets[code] = (mapping, table, table == "measurement")
        bounds: dict[tuple[int, str | None], tuple[Harmonised, float, float] | None] = {}
        waiting: list[BlockEvent] = []
        kept: dict[str, tuple[BlockEvent, str, Mapping]] = {}
        unmapped = report.unmapped
        for i, e in enumerate(events):
            birth = born[e.person_key]
            if birth is None:
                if final:
                    found.append((places[i] if places else i, self._dangling(e)))
                else:
                    waiting.append(e)
                continue
            mapping, table, measured = targets[e.code]
            when = e.start
            if type(when) is not date and isinstance(when, datetime):
                when = when.date()
            doubt = when is None or not birth <= when <= today
            if measured and not doubt and e.value is not None:
                key = (mapping.concept_id, e.unit)
                try:
                    limits = bounds[key]
                except KeyError:
                    limits = bounds[key] = value_bounds(*key)
                if limits is not None:
                    stored, low, high = limits
                    doubt = not low <= stored.apply(e.value) <= high
            if doubt:
                problem = _implausible(e, births[e.person_key], today, table, mapping.concept_id)
                if problem:
                    rejected = Rejected(e.key, e.location, *problem, e.raw)
                    found.append((places[i] if places else i, rejected))
                    continue
            if not mapping.concept_id:
                unmapped[f"{block.system}|{e.code}"] += 1
            if e.key in kept:
                out.superseded += 1
            kept[e.key] = (e, table, mapping)
        out.quarantine.extend(r for _, r in sorted(found, key=lambda f: f[0]))
        if waiting:
            self.deferred.append(EventBlock(block.system, block.default_table, waiting))
            out.waiting = len(waiting)
        by_table: dict[str, list[tuple[BlockEvent, str, Mapping]]] = {}
        for entry in kept.values():
            by_table.setdefault(entry[1], []).append(entry)
        ids = {p: self.person_id(p) for p in {e.person_key for e, _, _ in kept.values()}}
        for table, entries in by_table.items():
            events = [e for e, _, _ in entries]
            mappings = [m for _, _, m in entries]
            person_ids = [ids[e.person_key] for e in events]
            columns = block_columns(self.system, table, events, mappings, person_ids, vocab)
            if "unit_concept_id" in columns:
                sent = zip(columns["unit_source_value"], columns["unit_concept_id"], strict=True)
                unread = sum(1 for unit, concept in sent if unit and not concept)
                if unread:
                    report.warnings[UNIT_UNREADABLE] += unread
            out.add_columns(table, columns, events)
        return out

    def _convert_one(
        self, record: SourceRecord, out: Batch, report: IngestReport
    ) -> Rejected | None:
        if type(record) is SourceEvent:
            problem = self._event(record, out, report)
            if problem is None and record.warnings:
                report.warnings.update(record.warnings)
            return problem
        if isinstance(record, Rejected):
            return record
        if isinstance(record, Skipped):
            if record.withdraws and record.key is not None:
                if not out.withdraw(record.key, record.version, record.amends, record.rule):
                    return None  # the batch holds a newer version: superseded
                self.births.pop(record.key, None)  # a withdrawn patient is looked up again
                self.withdrawn[record.key] = record.rule
            report.skipped += 1
            report.skipped_rules[record.rule] += 1
            return None
        if type(record) is SourcePerson and record.key in self.retired:
            report.skipped += 1  # its person was merged into another; its facts file there
            report.skipped_rules[MERGED_AWAY] += 1
            return None
        if type(record) is SourcePerson and record.key in self.identified:
            self._same_person(record, report)
            if record.key in self.elsewhere:
                out.confirm(record, "person", self.person_id(record.key))
            return None
        if self.moving and admits(record):
            record = self._moved(record, out)
        elif type(record) is SourceVisit and record.cancels:
            reopened = self._cancel_discharge(record, out)
            if reopened is None:
                report.skipped += 1
                report.skipped_rules[DISCHARGE_CANCELLED] += 1
                return None
            record = reopened
        elif (
            type(record) is SourceVisit
            and record.open_visit
            and (cancel := self._cancelling(record)) is not None
        ):
            self._spend(cancel, record, out)
            out.applied.add(record.key)
            self.pending.get(self._kept_key(record.person_key), {}).pop(record.key, None)
            report.skipped += 1
            report.skipped_rules[DISCHARGE_CANCELLED] += 1
            return None
        if type(record) is SourceVisit and record.open_visit:
            matched, self.ending = self.ending, None
            ended = matched[1] if matched and matched[0] is record else self._ended(record)
            if ended is None:  # kept, to end the visit of an admission read later
                kept = self._kept(record)
                out.pending.append(kept)
                self.pending.setdefault(kept.person_key, {})[record.key] = kept
                self.any_pending = True
                report.skipped += 1
                report.skipped_rules[DISCHARGE_UNMATCHED] += 1
                report.warnings[DISCHARGE_UNMATCHED] += 1
                return None
            self._applied(self._kept(record), out)
            record = ended
        warnings = getattr(record, "warnings", ())
        problem = self._convert_record(record, out)
        if problem is None and warnings:
            report.warnings.update(warnings)
        return problem

    def _convert_record(self, record: SourceRecord, out: Batch) -> Rejected | None:
        if isinstance(record, SourcePerson):
            return self._person(record, out)
        if isinstance(record, SourceRow):
            return self._omop_row(record, out)
        assert not isinstance(record, (EventBlock, Rejected, Skipped, SourceEvent))
        birth = self.births.get(record.person_key)
        if birth is None:
            return self._dangling(record)
        person_id = self.person_id(record.person_key)
        if isinstance(record, SourceMerge):
            if record.restores is not None:
                return self._unlink(record, record.restores, person_id, out)
            return self._merge(record, person_id, out)
        problem = date_problem(record.start, birth, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        record = self._tied(record)
        out.add(record, visit_row(self.system, record, person_id))
        self.visits.add(record.key)
        self.no_visits.discard(record.key)
        return None

    def _tied(self, visit: SourceVisit) -> SourceVisit:
        """The visit as stored, noted among the patient's visits of this run."""
        mine = self.run_visits.setdefault(visit.person_key, {})
        mine[visit.key] = (visit.start, visit.end is not None, visit.version)
        return visit

    def _known_visits(self, person_key: str) -> dict[str, KnownVisit]:
        """The visits of the patient's person from this source (a merged patient's are the
        survivor's), by key: stored, then as this run left them (a visit record older than
        the stored version changes nothing)."""
        source, visit = schema.source_record, schema.visit_occurrence
        query = (
            select(
                source.c.record_key,
                source.c.source_version,
                visit.c.visit_start_datetime,
                visit.c.visit_start_date,
                visit.c.visit_end_datetime,
            )
            .join(visit, visit.c.visit_occurrence_id == source.c.cdm_id)
            .where(
                source.c.source_system == self.system,
                source.c.cdm_table == "visit_occurrence",
                source.c.role == schema.PRODUCED,
                visit.c.person_id == self.person_id(person_key),
            )
        )
        if person_key not in self.stored_visits:
            reopened = self._reopened_stays()
            with self.store.connect() as conn:
                self.stored_visits[person_key] = {
                    key: (
                        at or on,
                        ended is not None,
                        admission_version(version) if key in reopened else version,
                    )
                    for key, version, at, on, ended in conn.execute(query)
                }
        stored = self.stored_visits[person_key]
        found = dict(stored)
        person = self.person_id(person_key)
        for patient, visits in self.run_visits.items():
            if patient != person_key and self.person_ids.get(patient) != person:
                continue  # another patient's (a merged one's visits are the survivor's)
            for key, known in visits.items():
                if key not in stored or not older(known[2], stored[key][2]):
                    found[key] = known
        return found

    def _load_visits(self, records: list[SourceRecord]) -> None:
        """Remember which visits the events of `records` name that this source stored in
        an earlier batch or run (a visit of this batch is remembered when mapped)."""
        keys = {getattr(r, "visit_key", None) for r in records if type(r) is SourceEvent}
        keys -= self.visits | self.no_visits | {r.key for r in records if type(r) is SourceVisit}
        keys.discard(None)
        if not keys:
            return
        source = schema.source_record
        with (
            self.store.connect() as conn,
            values_in(conn, source.c.record_key, sorted(keys)) as wanted,
        ):
            found = set(
                conn.execute(
                    select(source.c.record_key).where(
                        source.c.source_system == self.system,
                        source.c.cdm_table == "visit_occurrence",
                        source.c.role == schema.PRODUCED,
                        wanted,
                    )
                ).scalars()
            )
        self.visits |= found
        self.no_visits |= keys - found

    def _dangling(
        self, record: SourceVisit | SourceEvent | BlockEvent | SourceRow | SourceMerge
    ) -> Rejected:
        """The quarantine entry of a record whose patient is not in this source: withdrawn
        by this run (entered in error…), or never sent."""
        rule = self._withdrawal(record.person_key or "")
        if rule is not None:
            message = f"refers to {record.person_key}, which this source withdrew ({rule})"
            return Rejected(record.key, record.location, WITHDRAWN_PATIENT, message, record.raw)
        message = f"refers to {record.person_key}, which is not in this source"
        return Rejected(record.key, record.location, "reference.dangling", message, record.raw)

    def _restored_by(self, key: str, raw: bytes) -> bool:
        """Whether the person of `key` was last written from the message `raw` (an unlink
        read before)."""
        source = schema.source_record
        digest = hashlib.sha256(raw).hexdigest()
        with self.store.connect() as conn:
            found = conn.execute(
                select(source.c.content_hash).where(
                    source.c.source_system == self.system,
                    source.c.record_key == key,
                    source.c.cdm_table == "person",
                    source.c.role == schema.PRODUCED,
                )
            ).scalar()
        return found == digest

    def _withdrawal(self, key: str) -> str | None:
        """The rule by which this source withdrew the record of `key`, in this run or an
        earlier one (table withdrawal), or None."""
        if key not in self.withdrawn:
            table = schema.withdrawal
            with self.store.connect() as conn:
                found = conn.execute(
                    select(table.c.rule).where(
                        table.c.source_system == self.system, table.c.record_key == key
                    )
                ).scalar()
            if found is None:
                return None
            self.withdrawn[key] = found
        return self.withdrawn[key]

    def _merge(self, record: SourceMerge, person_id: int, out: Batch) -> Rejected | None:
        """Merge the person of `record.old_person_key` into `person_id`; the old key is
        retired: what comes later under it files under the survivor."""
        old = record.old_person_key
        if old not in self.births:
            self._load_births({old})
        if old not in self.births:
            if self._merged_away(old):
                out.merged_before += 1
                return None
            message = f"merges {old}, which is not in this source"
            return Rejected(record.key, record.location, "reference.dangling", message, record.raw)
        old_id = self.person_id(old)
        if old_id == person_id:
            out.merged_before += 1  # merged before, in this run or an earlier one
            return None
        if old in self.retired:
            message = f"merges {old}, which was merged into another person before"
            return Rejected(record.key, record.location, MERGED_ELSEWHERE, message, record.raw)
        out.merges.append((old_id, person_id, record))
        survivor_key = self._kept_key(record.person_key)
        for key, survivor in self.retired.items():  # merged into the old person before
            if survivor == old_id:
                self.retired[key] = self.person_ids[key] = person_id
                self.survivor_keys[key] = survivor_key
        self.retired[old] = self.person_ids[old] = person_id
        self.survivor_keys[old] = survivor_key
        self.any_retired = True
        self._with_pending({old})  # what the store keeps for the old key moves too
        for kept in (self.pending, self.cancels):  # they wait for the survivor's visits
            waiting = kept.pop(old, {})
            kept.setdefault(survivor_key, {}).update(
                (key, replace(visit, person_key=survivor_key)) for key, visit in waiting.items()
            )
        self.pending_looked.discard(survivor_key)
        return None

    def _unlink(
        self, record: SourceMerge, restores: SourcePerson, person_id: int, out: Batch
    ) -> Rejected | None:
        """Undo the link of `record.old_person_key` into `person_id` (an A37): the key
        is no longer retired and files under its own person again, as `restores` says."""
        old = record.old_person_key
        if old not in self.retired:
            self._load_retired({old})
        if self.retired.get(old) != person_id:
            if self._restored_by(old, record.raw):
                out.merged_before += 1  # this unlink was read before: nothing to do
                return None
            message = f"unlinks {old} from {record.person_key}, which are not linked"
            return Rejected(record.key, record.location, NOT_LINKED, message, record.raw)
        problem = birth_problem(restores.birth_date, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        assert restores.birth_date is not None
        del self.retired[old]
        self.survivor_keys.pop(old, None)
        self.person_ids.pop(old, None)
        self.births[old] = restores.birth_date
        out.merges.append((self.person_id(old), person_id, record))
        return None

    def _event(self, record: SourceEvent, out: Batch, report: IngestReport) -> Rejected | None:
        if self.rekeyed and record.visit_key in self.rekeyed:
            record = replace(record, visit_key=self.rekeyed[record.visit_key])
        birth = self.births.get(record.person_key)
        if birth is None:
            return self._dangling(record)
        record, by_age = aged(record, birth)
        person_id = self.person_id(record.person_key)
        row, mapped = event_row(self.system, record, person_id, self.vocab)
        concept_id = int(row.values.get("measurement_concept_id", 0))
        problem = _implausible(record, birth, self.today, row.table, concept_id)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        if not mapped:
            report.unmapped[f"{record.system}|{record.code}"] += 1
        if record.unit and row.values.get("unit_concept_id") == 0:
            report.warnings[UNIT_UNREADABLE] += 1
        if record.visit_key is not None and record.visit_key not in self.visits:
            row.values["visit_occurrence_id"] = None
            report.warnings[VISIT_MISSING] += 1
        if by_age:
            report.warnings[AGE_DATE] += by_age
        out.add(record, row)
        return None

    def _person(self, record: SourcePerson, out: Batch) -> Rejected | None:
        if record.unsaid:
            record = self._completed(record)
        problem = birth_problem(record.birth_date, self.today)
        if problem:
            return Rejected(record.key, record.location, *problem, record.raw)
        assert record.birth_date is not None
        if record.death_date is not None:
            problem = date_problem(record.death_date, record.birth_date, self.today)
            if problem:
                return Rejected(record.key, record.location, *problem, record.raw)
        self.births[record.key] = record.birth_date
        self.demographics[record.key] = (
            record.birth_date,
            record.birth_parts,
            record.gender,
            record.death_date,
        )
        if record.key.startswith(IDENTIFIED):
            gender = GENDERS.get(record.gender or "", 0)
            self.identified[record.key] = (day(record.birth_date), gender)
        out.add(record, person_row(self.system, record))
        if record.death_date is not None:
            out.add(record, death_row(self.system, record))
        return None

    def _completed(self, record: SourcePerson) -> SourcePerson:
        """An update with its unsaid fields as the person had them (in this run, or stored);
        a person not known yet has none."""
        known = self.demographics.get(record.key)
        if known is None:
            return record
        born, parts, gender, death = known
        return replace(
            record,
            birth_date=born if "birth_date" in record.unsaid else record.birth_date,
            birth_parts=parts if "birth_date" in record.unsaid else record.birth_parts,
            gender=gender if "gender" in record.unsaid else record.gender,
            death_date=death if "death_date" in record.unsaid else record.death_date,
            unsaid=frozenset(),
        )

    def _load_demographics(self, keys: set[str]) -> None:
        """Remember the demographics of the stored persons of `keys` (see `demographics`)."""
        ids = {person_id(self.system, k): k for k in keys}
        person, death = schema.person, schema.death
        columns = (*_BIRTH, person.c.gender_source_value, death.c.death_date)
        joined = person.outerjoin(death, death.c.person_id == person.c.person_id)
        with (
            self.store.connect() as conn,
            values_in(conn, person.c.person_id, list(ids)) as wanted,
        ):
            query = select(person.c.person_id, *columns).select_from(joined).where(wanted)
            found = conn.execute(query).all()
        for pid, year, month, day_, gender, died in found:
            parts = 3 if day_ else 2 if month else 1
            self.demographics[ids[pid]] = (_born(year, month, day_), parts, gender, died)

    def _omop_row(self, record: SourceRow, out: Batch) -> Rejected | None:
        values = dict(record.values)
        table = schema.metadata.tables[record.table]
        if record.table == "person":
            birth = _born(
                int(values["year_of_birth"]),
                values.get("month_of_birth"),
                values.get("day_of_birth"),
            )
            problem = birth_problem(birth, self.today)
            if problem:
                return Rejected(record.key, record.location, *problem, record.raw)
            self.births[record.key] = birth
        elif record.person_key is not None:
            birth = self.births.get(record.person_key)
            if birth is None:
                return self._dangling(record)
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

    def person_id(self, key: str) -> int:
        """The person_id of a source patient key."""
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
                .where(source.c.cdm_table == "person", source.c.role == schema.PRODUCED)
            ).scalars()
            return any(
                conn.execute(select(person.c.person_id).where(person.c.person_id == i)).first()
                is None
                for i in ids
            )

    def _same_person(self, record: SourcePerson, report: IngestReport) -> None:
        """Count a patient record of a person already loaded as skipped (a person another
        source system loaded keeps it in its provenance, role CONFIRMS); warn when its
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
        source = schema.source_record
        with self.store.connect() as conn:
            found = self._stored(conn, keys)
            if not found:
                return
            with values_in(conn, source.c.record_key, keys) as mine:
                own = set(
                    conn.execute(
                        select(source.c.record_key)
                        .where(source.c.source_system == self.system)
                        .where(source.c.cdm_table == "person")
                        .where(source.c.role == schema.PRODUCED)
                        .where(mine)
                    ).scalars()
                )
        for key, (born, gender) in found.items():
            if key not in own:
                self.identified[key] = (born, gender)
                self.births[key] = born
                self.elsewhere.add(key)

    def _load_births(self, keys: set[str]) -> None:
        """Remember the birth dates of persons of `keys` already in the store, and of the
        survivors of those merged into another person."""
        with self.store.connect() as conn:
            for key, (born, _) in self._stored(conn, keys).items():
                self.births[key] = born
        self._load_retired(keys - self.births.keys())

    def _load_retired(self, keys: set[str]) -> None:
        """Remember which of `keys` are retired (their person was merged into another: see
        write.MERGED), with their survivor's person_id, birth date and key (of this source
        system: see `survivor_keys`). Identified keys are retired by any source system,
        others by this one."""
        if not keys or not self._merges_stored():
            return
        source, person = schema.source_record, schema.person
        with self.store.connect() as conn:
            with values_in(conn, source.c.record_key, sorted(keys)) as wanted:
                found = conn.execute(
                    select(source.c.record_key, source.c.source_system, source.c.cdm_id).where(
                        source.c.cdm_table == "person", source.c.role == schema.MERGED, wanted
                    )
                ).all()
            survivors = {
                key: cdm_id
                for key, system, cdm_id in found
                if system == self.system or key.startswith(IDENTIFIED)
            }
            if not survivors:
                return
            columns = (person.c.person_id, *_BIRTH)
            with values_in(conn, person.c.person_id, sorted(set(survivors.values()))) as alive:
                births = {
                    pid: _born(y, m, d)
                    for pid, y, m, d in conn.execute(select(*columns).where(alive))
                }
            with values_in(conn, source.c.cdm_id, sorted(births)) as alive:
                own = source.c.source_system == self.system, source.c.role == schema.PRODUCED
                produced = select(source.c.cdm_id, source.c.record_key).where(
                    source.c.cdm_table == "person", *own, alive
                )
                survivor_keys = dict(sorted(conn.execute(produced).all(), reverse=True))
        for key, survivor in survivors.items():
            if survivor in births:
                self.retired[key] = self.person_ids[key] = survivor
                self.births[key] = births[survivor]
                if survivor in survivor_keys:
                    self.survivor_keys[key] = survivor_keys[survivor]

    def _merges_stored(self) -> bool:
        """Whether the store holds a retired patient key (looked up once per run)."""
        if self.any_retired is None:
            source = schema.source_record
            with self.store.connect() as conn:
                found = select(source.c.role).where(source.c.role == schema.MERGED).limit(1)
                self.any_retired = conn.execute(found).first() is not None
        return self.any_retired

    def _stored(self, conn: Connection, keys: Iterable[str]) -> dict[str, tuple[date, int]]:
        """(birth date, gender concept) of the stored persons of `keys`, by key."""
        ids = {person_id(self.system, k): k for k in keys}
        person = schema.person
        columns = (person.c.person_id, *_BIRTH, person.c.gender_concept_id)
        with values_in(conn, person.c.person_id, list(ids)) as wanted:
            found = conn.execute(select(*columns).where(wanted)).all()
        return {ids[pid]: (_born(y, m, d), gender) for pid, y, m, d, gender in found}


#: A person's date of birth as the person table keeps it (month and day may be missing).
_BIRTH = (
    schema.person.c.year_of_birth,
    schema.person.c.month_of_birth,
    schema.person.c.day_of_birth,
)


#: The quarantine rule of a fact whose patient this run withdrew (entered in error…).
WITHDRAWN_PATIENT = "reference.withdrawn"

#: The quarantine rule of a merge whose old patient was merged into another person before.
MERGED_ELSEWHERE = "merge.already_merged"
#: The quarantine rule of an unlink (HL7 A37) of two identifiers that are not linked.
NOT_LINKED = "hl7.unlink.not_linked"


#: A person's (birth date, its parts, gender, death date), as SourcePerson carries them.
Demographics = tuple[date, int, str | None, date | None]


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


def _checked_keys(
    events: list[BlockEvent], rejected: list[tuple[int, Rejected]]
) -> tuple[list[BlockEvent], list[int] | None]:
    """A block's events with NUL removed from their keys (`checked_event`), and the place in
    the block of each; one whose key is too long goes to `rejected` with its place. The
    events themselves and no places when no key needs it (one look at the block's keys)."""
    keys = [e.key for e in events]
    if (
        max(map(len, keys), default=0) <= MAX_KEY
        and NUL not in "".join(keys)
        and NUL not in "".join({e.person_key for e in events})
    ):
        return events, None
    kept, places = [], []
    for i, e in enumerate(events):
        e = checked_event(e)
        if type(e) is Rejected:
            rejected.append((i, e))
        else:
            kept.append(e)
            places.append(i)
    return kept, places


def _is_person(record: SourceRecord) -> bool:
    return isinstance(record, SourcePerson) or (
        isinstance(record, SourceRow) and record.table == "person"
    )


def _keys_of(record: SourceRecord) -> tuple[str, ...]:
    """The record key of a deferred record, and the resource it is part of."""
    return tuple(k for k in (getattr(record, "key", None), getattr(record, "whole", None)) if k)
