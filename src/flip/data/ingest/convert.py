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
from flip.data.ingest.batch import Batch, BlockBatch
from flip.data.ingest.clean import NUL, checked, checked_event
from flip.data.ingest.report import (
    DEMOGRAPHICS_CONFLICT,
    DISCHARGE_UNMATCHED,
    MERGED_AWAY,
    SAME_PERSON,
    UNIT_UNREADABLE,
    VISIT_MISSING,
    IngestReport,
)
from flip.data.sources.records import (
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


class Converter:
    """Maps the records of one source system to CDM rows, batch by batch, over one run.

    It remembers each patient's birth date (to check the dates of their facts) and
    person id, and keeps the records whose patient has not been seen yet in `deferred`.
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
        #: Whether the store holds retired patient keys (None: not looked yet).
        self.any_retired: bool | None = None
        #: Keys of records withdrawn (entered in error…), by this run or (looked up) an
        #: earlier one, with the rule: a fact naming one as its patient is told so when it
        #: dangles.
        self.withdrawn: dict[str, str] = {}
        #: Per patient key this run loaded, or whose stored person an update needed: (birth
        #: date, its parts, gender, death date), which an update's unsaid fields keep.
        self.demographics: dict[str, Demographics] = {}
        #: Per patient key, the visits this run converted: key -> start while open, None
        #: once ended (over what the store holds: see `_open_visits`).
        self.run_visits: dict[str, dict[str, date | None]] = {}
        #: Keys of visits that ended the patient's one open visit -> that visit's key.
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
        )
        try:
            yield
        except BaseException:
            self.births, self.person_ids, self.identified, self.elsewhere = saved[:4]
            self.retired, self.any_retired = saved[4:6]
            del self.deferred[saved[6] :]
            self.deferred_keys, self.withdrawn, self.demographics = saved[7:10]
            self.run_visits, self.rekeyed, self.visits = saved[10:]
            self.no_visits.clear()
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
        for record in people:
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(problem)
        # a patient whose record was quarantined may be in the store: its facts file there
        keys = [getattr(r, "person_key", None) for r in others]
        wanted = {k for k in keys if k is not None and k not in self.births}
        if wanted:
            self._load_births(wanted)
        known = self.births
        for record, key in zip(others, keys, strict=True):
            waits = key is not None and key not in known and key not in persons
            if not final and (waits or self._withdraws_waiting(record)):
                self.deferred.append(record)
                self.deferred_keys.update(_keys_of(record))
                out.waiting += 1
                continue
            problem = self._convert_one(record, out, report)
            if problem is not None:
                out.quarantine.append(problem)
        return out

    def _withdraws_waiting(self, record: SourceRecord) -> bool:
        """Whether `record` withdraws a record that waits for its patient: it then waits
        too, so that the later copy still wins."""
        return type(record) is Skipped and record.withdraws and record.key in self.deferred_keys

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
        if type(record) is SourceVisit and record.open_visit:
            ended = self._ended(record)
            if ended is None:
                report.skipped += 1
                report.skipped_rules[DISCHARGE_UNMATCHED] += 1
                report.warnings[DISCHARGE_UNMATCHED] += 1
                return None
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

    def _ended(self, visit: SourceVisit) -> SourceVisit | None:
        """A visit record that ends the patient's open visit (`open_visit`) as that visit:
        its key (and start, unless it gives its admission); None unless exactly one is open."""
        opened = self._open_visits(visit.person_key)
        if len(opened) != 1:
            return None
        ((key, start),) = opened.items()
        self.rekeyed[visit.key] = key
        start = visit.start if visit.admitted else start
        return replace(visit, key=key, start=start, open_visit=False)

    def _tied(self, visit: SourceVisit) -> SourceVisit:
        """The visit as stored, noted among the patient's visits of this run."""
        mine = self.run_visits.setdefault(visit.person_key, {})
        mine[visit.key] = visit.start if visit.end is None else None
        return visit

    def _open_visits(self, person_key: str) -> dict[str, date]:
        """The patient's open visits of this source (no end): stored, then as this run left
        them."""
        source, visit = schema.source_record, schema.visit_occurrence
        query = (
            select(source.c.record_key, visit.c.visit_start_datetime, visit.c.visit_start_date)
            .join(visit, visit.c.visit_occurrence_id == source.c.cdm_id)
            .where(
                source.c.source_system == self.system,
                source.c.cdm_table == "visit_occurrence",
                source.c.role == schema.PRODUCED,
                source.c.person_key == person_key,
                visit.c.visit_end_datetime.is_(None),
            )
        )
        with self.store.connect() as conn:
            found: dict[str, date | None] = {k: t or d for k, t, d in conn.execute(query)}
        found.update(self.run_visits.get(person_key, {}))
        return {key: start for key, start in found.items() if start is not None}

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
        for key, survivor in self.retired.items():  # merged into the old person before
            if survivor == old_id:
                self.retired[key] = self.person_ids[key] = person_id
        self.retired[old] = self.person_ids[old] = person_id
        self.any_retired = True
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
        write.MERGED), with their survivor's person_id and birth date. Identified keys are
        retired by any source system, others by this one."""
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
        for key, survivor in survivors.items():
            if survivor in births:
                self.retired[key] = self.person_ids[key] = survivor
                self.births[key] = births[survivor]

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
