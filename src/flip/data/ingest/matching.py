"""Discharges naming no visit matched to the stays they end (HL7 A03 and A13 without PV1-19).

The converter's half of `discharges` (which keeps them in the store): a discharge ends the
open visit of its patient that it fits, waits for an admission read later (kind discharge),
is taken over by a later admission it fits (kind ended, `_moved`), or is cancelled by a
cancel-discharge (A13) read before or after it. `DischargeMatching` holds that logic and
its state; `Converter` supplies the visits it knows, the withdrawals it has seen and the
conversion of a visit record (the methods declared at the end of the class).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime

from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import Store, values_in
from flip.data.ingest import discharges
from flip.data.ingest.batch import Batch, older, salted, versioned, with_admission
from flip.data.ingest.report import IngestReport
from flip.data.sources.records import Rejected, SourceRecord, SourceVisit

#: A visit as a run knows it: (start, whether it ended, version).
KnownVisit = tuple[date | None, bool, str | None]


class DischargeMatching:
    """Matches discharges and cancel-discharges naming no visit to their patient's stays,
    over one run (the state `Converter.__init__` sets up and `undone_on_error` restores)."""

    store: Store
    system: str
    births: dict[str, date]
    interpretation: str
    stored_visits: dict[str, dict[str, KnownVisit]]
    pending: dict[str, dict[str, SourceVisit]]
    pending_looked: set[str]
    any_pending: bool | None
    moving: dict[str, dict[str, SourceVisit]]
    resolved: set[str]
    cancels: dict[str, dict[str, SourceVisit]]
    spent: set[str]
    pruning: bool
    prune_from: str | None
    replaced: set[str] | None
    reopened_stays: set[str] | None
    batch_discharges: dict[str, list[SourceVisit]]
    waiting_discharges: set[str]
    ended_by: dict[tuple[str, str], str]
    ended_looked: set[str]
    ending_digests: set[str]
    ending: tuple[SourceVisit, SourceVisit] | None
    rekeyed: dict[str, str]
    survivor_keys: dict[str, str]

    def _forget_resolved(self, out: Batch) -> None:
        """Forget, with `out`, the kept discharges found to end no stored visit any more
        (those the batch keeps anew aside)."""
        if self.resolved:
            out.applied |= self.resolved - {v.key for v in out.pending}
            self.resolved = set()

    def _discharge_waits(self, record: SourceRecord, first: bool = False) -> bool:
        """Whether a discharge naming no visit waits (no open visit of its patient fits it
        yet: the admission may come later in the batch or run; one without admission time,
        read `first`, waits for the batch's admissions: a later one it fits may follow), or
        is a fact filed under one that waits."""
        if type(record) is SourceVisit and record.open_visit:
            if first and not record.admitted:
                self.waiting_discharges.add(record.key)
                return True
            if self._cancelling(record) is not None:
                return False
            ended = self._ended(record)
            if ended is not None:
                self.ending = (record, ended)
                return False
            self.waiting_discharges.add(record.key)
            return True
        visit = getattr(record, "visit_key", None)
        return bool(self.waiting_discharges) and visit in self.waiting_discharges

    def recall(self, out: Batch, report: IngestReport, persons: set[str]) -> None:
        """End, into `out`, the waiting discharges of `persons` that now fit an open visit
        of their patient, as if read after it (each counts as read again: `out.recalled`)."""
        persons = self._with_pending({self._kept_key(p) for p in persons})
        if not persons:
            return
        self.stored_visits = {}
        unknown = persons - self.births.keys()
        if unknown:
            self._load_births(unknown)
        kept_now = {v.key for v in out.pending}
        for person in sorted(persons & self.births.keys()):
            for key, discharge in list(self.pending.get(person, {}).items()):
                ended = None if key in kept_now else self._ended(discharge)
                if ended is None:
                    continue
                out.recalled += 1
                self._applied(discharge, out)
                out.relinks[key] = ended.key
                problem = self._convert_record(ended, out)
                if problem is not None:
                    out.quarantine.append(versioned(problem, ended))
                elif ended.warnings:
                    report.warnings.update(ended.warnings)

    def _applied(self, discharge: SourceVisit, out: Batch) -> None:
        """Note that `discharge` (as kept: `_kept`) ended a visit: it no longer waits; one
        giving no admission time stays kept (kind ended) for an admission read later that
        it fits, begun after that visit, to take it over (`_moved`)."""
        self.pending.get(discharge.person_key, {}).pop(discharge.key, None)
        if discharge.admitted:
            out.applied.add(discharge.key)
            return
        out.pending.append(discharge)
        out.ended.add(discharge.key)
        self.moving.setdefault(discharge.person_key, {})[discharge.key] = discharge
        self.any_pending = True

    def _with_pending(self, persons: set[str]) -> set[str]:
        """Those of `persons` for whom a discharge waits (kept in the store, looked up once
        per patient, or read by this run)."""
        if self.any_pending is None:
            table = schema.pending_discharge
            with self.store.connect() as conn:
                found = select(table.c.record_key).where(table.c.source_system == self.system)
                self.any_pending = conn.execute(found.limit(1)).first() is not None
        unlooked = persons - self.pending_looked if self.any_pending else set()
        if unlooked:
            self.pending_looked |= unlooked
            with self.store.connect() as conn:
                if self.pruning and self.replaced is None:
                    self.replaced = discharges.kept_from(conn, self.system, self.prune_from)
                for kind, visit in discharges.waiting(conn, self.system, unlooked):
                    if visit.cancels and visit.key in (self.replaced or ()):
                        continue
                    if kind == discharges.SPENT:
                        self.spent.add(visit.key)
                    kept = self.cancels if visit.cancels else self.pending
                    if kind == discharges.ENDED:
                        if not self._still_ends(visit):
                            self.resolved.add(visit.key)
                            continue
                        kept = self.moving
                    kept.setdefault(visit.person_key, {}).setdefault(visit.key, visit)
        return {p for p in persons if self.pending.get(p)}

    def _ended(self, visit: SourceVisit) -> SourceVisit | None:
        """A visit record that ends the patient's open visit it fits (`_fitting`) as that
        visit: its key (and start, unless it gives its admission); None when none fits. A
        record that ended a stored visit before (its content is that visit's) is that visit
        again (with its start), whatever is open now. A withdrawn (cancelled) visit is never
        ended."""
        key = self._ended_before(visit)
        start = None
        if key is not None and self._withdrawal(key) is not None:
            return None
        if key is None:
            fitting = self._fitting(visit)
            if fitting is None:
                return None
            key, start = fitting
        return self._ending(visit, key, start)

    def _ending(self, visit: SourceVisit, key: str, start: date | None) -> SourceVisit:
        """The visit record of `key` (begun at `start`, when known) that the discharge
        `visit` ends."""
        self.rekeyed[visit.key] = key
        digest = self._digest(visit)
        self.ended_by[(visit.person_key, digest)] = key
        self.ending_digests.add(digest)
        known = self._known_visits(visit.person_key).get(key)
        if start is None and known is not None:
            start = known[0]
        start = visit.start if visit.admitted or start is None else start
        version = with_admission(visit.version, known[2] if known else None)
        return replace(visit, key=key, start=start, open_visit=False, version=version)

    def _moved(self, admission: SourceVisit, out: Batch) -> SourceVisit:
        """The admission ended by the patient's kept discharge (giving no admission time)
        that ended an earlier visit (`moving`), when the admission began
        after that visit and the discharge fits it, as it would have ended it had both been
        read before it: that visit opens again (into `out`, its content the admission's:
        the discharge's is now this visit's), the discharge counts as read again, and its
        facts move with it. Else the admission as it is."""
        patient = self._kept_key(admission.person_key)
        for discharge in self.moving.get(patient, {}).values():
            leaving = discharge.end or discharge.start
            if admission.start is None or leaving is None:
                continue
            if _instant(admission.start) > _instant(leaving):
                continue  # (most kept discharges: those of earlier stays)
            before = self._ended_before(discharge)
            known = self._known_visits(admission.person_key)
            start, ended, version = known.get(before or "", (None, False, None))
            if (
                before in (None, admission.key)
                or not ended
                or start is None
                or not _instant(start) < _instant(admission.start)
                or self._withdrawal(admission.key) is not None
            ):
                continue
            reopened = replace(
                discharge,
                key=before,
                start=start,
                end=None,
                open_visit=False,
                admitted=True,
                location=admission.location,
                raw=admission.raw,
                version=version,
            )
            problem = self._convert_record(reopened, out)
            if problem is not None:
                out.quarantine.append(problem)
            out.recalled += 1
            out.relinks[discharge.key] = admission.key
            self._tied(admission)
            return self._ending(discharge, admission.key, admission.start)
        return admission

    def _cancel_discharge(self, cancel: SourceVisit, out: Batch) -> SourceVisit | None:
        """Apply `cancel` (an A13 naming no visit) once (read again, by a re-run or as a
        retransmission, it does nothing): it drops the kept discharge naming no visit it
        cancels (`_cancels`; one giving no admission, the latest), else it opens again the
        ended visit it fits (`_reopened`: returned), else it waits, kept, for the
        discharge it cancels, read later. Spent, it cancels only discharges of the
        admission it dropped or opened again (`_spend`). A cancel-discharge sent under a
        retired patient key applies to its survivor's (`_kept`)."""
        cancel = self._kept(cancel)
        self._with_pending({cancel.person_key})
        mine = self.cancels.setdefault(cancel.person_key, {})
        if cancel.key in mine:
            return None
        mine[cancel.key] = cancel
        out.pending.append(cancel)
        self.any_pending = True
        kept = self.pending.get(cancel.person_key, {})
        fits = [d for d in kept.values() if _cancels(cancel, d)]
        if not cancel.admitted and fits:
            fits = [_latest(fits)]
        for discharge in fits:
            del kept[discharge.key]
            out.applied.add(discharge.key)
        if fits:
            self._spend(cancel, fits[0], out)
            return None
        reopened = self._reopened(cancel)
        if reopened is not None and not cancel.admitted:
            self._spend(cancel, reopened, out)
        return reopened

    def _spend(self, cancel: SourceVisit, discharge: SourceVisit, out: Batch) -> None:
        """Note that `cancel` (naming no admission) cancelled `discharge`: kept from now on
        as of its admission, or spent when it gives none."""
        if cancel.admitted:
            return
        if discharge.admitted and discharge.start is not None:
            cancel = replace(cancel, start=discharge.start, admitted=True)
        else:
            self.spent.add(cancel.key)
            out.spent.add(cancel.key)
        self.cancels.setdefault(cancel.person_key, {})[cancel.key] = cancel
        out.pending = [v for v in out.pending if v.key != cancel.key] + [cancel]
        self.any_pending = True

    def _reopened(self, cancel: SourceVisit) -> SourceVisit | None:
        """The visit record that opens again the patient's ended visit whose discharge
        `cancel` (an A13 naming no visit) cancels: of the ended visits not withdrawn that
        began at its PV1-44 (when given; else not after its MSH-7), the one that began last;
        None when none fits, two began at its PV1-44, or the visit's stored version is newer
        than the A13 (a discharge sent after it)."""
        found = [
            (_instant(start), key, start, version)
            for key, (start, ended, version) in self._known_visits(cancel.person_key).items()
            if ended
            and start is not None
            and (not cancel.admitted or _instant(start) == _instant(cancel.start))
            and _instant(start) <= _instant(cancel.start)
            and self._withdrawal(key) is None
        ]
        if not found or (cancel.admitted and len(found) > 1):
            return None
        _, key, start, version = max(found)
        if older(cancel.version, version):
            return None
        self.rekeyed[cancel.key] = key
        version = with_admission(cancel.version, version)
        return replace(cancel, key=key, start=start, cancels=False, version=version)

    def _cancelling(self, discharge: SourceVisit) -> SourceVisit | None:
        """The cancel-discharge of the patient, kept or read by this run, that cancels
        `discharge` (see `_cancels`; one naming no admission, the latest discharge of the
        batch it cancels), or None."""
        patient = self._kept_key(discharge.person_key)
        self._with_pending({patient})
        batch = self.batch_discharges.get(discharge.person_key, [])
        read_now = any(d is discharge for d in batch)
        for cancel in self.cancels.get(patient, {}).values():
            if cancel.key in self.spent or not _cancels(cancel, discharge):
                continue
            if cancel.admitted or not read_now:
                return cancel
            if _latest([d for d in batch if _cancels(cancel, d)]) is discharge:
                return cancel
        return None

    def _kept_key(self, person_key: str) -> str:
        """The patient key the records kept for `person_key` wait under: the survivor's
        for a retired key (merged into another person), else the key itself."""
        return self.survivor_keys.get(person_key, person_key)

    def _kept(self, visit: SourceVisit) -> SourceVisit:
        """A discharge or cancel-discharge as kept: under its survivor's key when sent under
        a retired one, so that it matches what is kept for the person whatever key sent it."""
        patient = self._kept_key(visit.person_key)
        return visit if patient == visit.person_key else replace(visit, person_key=patient)

    def _fitting(self, visit: SourceVisit) -> tuple[str, date] | None:
        """(key, start) of the open visit a discharge naming none ends: of those it fits
        (its admission time, when given, is their start; it does not end before they
        began) and not withdrawn, the one that began last; None when none fits."""
        leaving = visit.end if visit.end is not None or visit.admitted else visit.start
        fits = [
            (_instant(start), key, start)
            for key, (start, ended, _) in self._known_visits(visit.person_key).items()
            if not ended
            and start is not None
            and (not visit.admitted or _instant(visit.start) == _instant(start))
            and (leaving is None or _instant(start) <= _instant(leaving))
            and self._withdrawal(key) is None
        ]
        if not fits:
            return None
        _, key, start = max(fits)
        return key, start

    def _digest(self, visit: SourceVisit) -> str:
        """A record's content hash as the store keeps it."""
        return self._hashed(visit.raw)

    def _hashed(self, raw: bytes) -> str:
        """The content hash the store keeps for a record read from `raw`."""
        digest = hashlib.sha256(raw).hexdigest()
        return salted(digest, self.interpretation) if self.interpretation else digest

    def _reopened_stays(self) -> set[str]:
        """With a full re-export (prune), the keys of the stored visits that a kept
        cancel-discharge it replaces opened again (see discharges.reopened; looked up once):
        their stored version counts as their admission's only, so the re-export's own
        records of the stay (its A03, when the A13 is gone from it) are not older."""
        if self.reopened_stays is None:
            self.reopened_stays = set()
            if self.pruning:
                with self.store.connect() as conn:
                    self.reopened_stays = discharges.reopened(
                        conn, self.system, self.prune_from, self._hashed
                    )
        return self.reopened_stays

    def _ended_before(self, visit: SourceVisit) -> str | None:
        """The key of the stored visit of the patient whose content is this record's (it
        ended that visit in an earlier run), or None."""
        digest = self._digest(visit)
        if digest not in self.ended_looked:
            self._load_ended([visit])
        return self.ended_by.get((visit.person_key, digest))

    def _still_ends(self, discharge: SourceVisit) -> bool:
        """Whether a kept discharge (kind ended) still ends a visit: one stored, or ended by
        this run, has its content (under whichever patient key, a merged one's too)."""
        digest = self._digest(discharge)
        if digest not in self.ended_looked:
            self._load_ended([discharge])
        return digest in self.ending_digests

    def _load_ended(self, visits: list[SourceVisit]) -> None:
        """Look up, in one query, the stored visits that `visits` ended before."""
        digests = sorted({self._digest(v) for v in visits} - self.ended_looked)
        if not digests:
            return
        self.ended_looked.update(digests)
        source = schema.source_record
        with (
            self.store.connect() as conn,
            values_in(conn, source.c.content_hash, digests) as wanted,
        ):
            found = conn.execute(
                select(source.c.person_key, source.c.content_hash, source.c.record_key).where(
                    source.c.source_system == self.system,
                    source.c.cdm_table == "visit_occurrence",
                    source.c.role == schema.PRODUCED,
                    wanted,
                )
            )
            for person, digest, key in found:
                self.ended_by[(person, digest)] = key
                self.ending_digests.add(digest)

    def _convert_record(self, record: SourceRecord, out: Batch) -> Rejected | None:
        """Map a visit record into `out` (see Converter)."""
        raise NotImplementedError

    def _known_visits(self, person_key: str) -> dict[str, KnownVisit]:
        """The patient's visits from this source, by key (see Converter)."""
        raise NotImplementedError

    def _withdrawal(self, key: str) -> str | None:
        """The rule that withdrew the record of `key`, if one did (see Converter)."""
        raise NotImplementedError

    def _tied(self, visit: SourceVisit) -> SourceVisit:
        """The visit as stored, noted among the run's (see Converter)."""
        raise NotImplementedError

    def _load_births(self, keys: set[str]) -> None:
        """Look up the birth dates of the patients of `keys` (see Converter)."""
        raise NotImplementedError


def admits(record: SourceRecord) -> bool:
    """Whether `record` is an admission: a visit not ended, neither a discharge naming no
    visit nor a cancel-discharge."""
    return (
        type(record) is SourceVisit
        and record.end is None
        and not record.open_visit
        and not record.cancels
    )


def _cancels(cancel: SourceVisit, discharge: SourceVisit) -> bool:
    """Whether a cancel-discharge cancels a discharge: not sent before it (MSH-7), and of
    the same admission when both give one."""
    if older(cancel.version, discharge.version):
        return False
    either = not cancel.admitted or not discharge.admitted
    return either or _instant(discharge.start) == _instant(cancel.start)


def _latest(visits: list[SourceVisit]) -> SourceVisit:
    """Of discharges, the one sent last (the first of those none is older than; the last read
    where versions do not order)."""
    latest = (v for v in visits if not any(older(v.version, w.version) for w in visits))
    return next(latest, visits[-1])


def _instant(when: date | None) -> datetime:
    """A date or date and time as a comparable moment (a date is its midnight)."""
    if isinstance(when, datetime):
        return when.replace(tzinfo=None)
    assert when is not None
    return datetime(when.year, when.month, when.day)
