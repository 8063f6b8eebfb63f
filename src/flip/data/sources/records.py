"""Neutral records that every connector yields and the CDM writer consumes.

They are plain slotted classes, not frozen ones: a connector makes one per source
record, and a frozen dataclass costs twice as much to build. Nothing changes them.

A record's `version` (FHIR meta.versionId and lastUpdated, see fhir.version_of) orders
versions of one record: a later version replaces an earlier one whichever is read first.

Dates may be `datetime` values (a subclass of `date`): the writer then keeps the time
of day in the row's `*_datetime` column. `warnings` name the rules under which a reader
nulled an optional field that failed to parse; the run counts them per rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import NamedTuple

from flip.data.sources.tabular_dates import at_age

#: A person key `Patient?identifier=SYSTEM|VALUE` names a person by a business identifier:
#: its person_id is the same whichever source system loads it.
IDENTIFIED = "Patient?identifier="

#: The longest record key the store keeps (source_record.record_key, quarantine.record_key).
MAX_KEY = 200


def same_resource(earlier: object, later: object) -> bool:
    """Whether two records in a row are parts of one resource (`SourceEvent.whole`): a
    chunk or batch of records never ends between them."""
    whole = getattr(earlier, "whole", None)
    return whole is not None and getattr(later, "whole", None) == whole


def part_key(whole: str, index: int) -> str:
    """The record key of the `index`th part (component) of the resource keyed `whole`."""
    return f"{whole}#component[{index}]"


#: OMOP gender concepts of the gender values records carry (FHIR AdministrativeGender).
GENDERS = {"male": 8507, "female": 8532}


@dataclass(slots=True)
class SourcePerson:
    """A patient as the source describes them; `birth_parts` says how much of the birth date
    the source gave (3: the day, 2: year and month, 1: the year; the rest of `birth_date` is 1).
    `unsaid` names the fields (`birth_date`, `gender`, `death_date`) the source left empty
    meaning "no change" (an HL7 v2 update): they keep what the person had."""

    key: str
    source_value: str
    birth_date: date | None
    gender: str | None
    location: str
    raw: bytes
    death_date: date | None = None
    warnings: tuple[str, ...] = ()
    birth_parts: int = 3
    version: str | None = None
    unsaid: frozenset[str] = frozenset()


#: The fields of a SourcePerson a source may leave unsaid (see SourcePerson.unsaid).
DEMOGRAPHICS = ("birth_date", "gender", "death_date")


@dataclass(slots=True)
class SourceVisit:
    """An encounter or visit; `provider_key` and `care_site_key` name its provider and
    care site by their source keys. With `open_visit` the record ends the patient's
    open visit of its source that it fits, whose key it takes (its own `key` when none
    fits); `admitted` says whether `start` is the source's admission time (else, a message
    time, it does not replace the open visit's). With `cancels` the record makes no visit:
    it cancels the discharge that waits for the visit it fits (see ingest.discharges)."""

    key: str
    person_key: str
    start: date | None
    end: date | None
    source_value: str
    location: str
    raw: bytes
    warnings: tuple[str, ...] = ()
    provider_key: str | None = None
    care_site_key: str | None = None
    version: str | None = None
    open_visit: bool = False
    admitted: bool = True
    cancels: bool = False


@dataclass(slots=True)
class SourceEvent:
    """A clinical fact: a diagnosis, drug, procedure, measurement, observation, note or image.

    `default_table` is where it lands when its code maps to no standard concept;
    a mapped code lands in the table of its concept's domain (notes and imaging
    studies always land in `note` and `image_occurrence`). `value_code` is a
    coded value (system, code); `text` a note's text or a string value;
    `detail` carries table-specific fields (title, study_uid, modality, route…);
    `operator` is a value's comparator (`<`, `<=`, `=`, `>=`, `>`); `provider_key`
    the source key of the provider who performed or recorded it. `value_sent` and
    `unit_sent` keep the value and unit as the source wrote them when the reader
    converted or nulled them (else the source values are `value` and `unit`).
    `replaces` is the key of an earlier record of the same source this one takes the place
    of (a DICOM file that now stands for its series, once stored as one of its instances):
    that record's rows and provenance are removed when this one is written. `whole` is
    the key of the source resource the record is read from when one resource may give
    several records (an Observation's components, keyed `part_key(whole, i)`): the
    records an earlier version of it gave and this one no longer does are removed.
    `alternate` (an HL7 CE's alternate code) and then `alternates` (a FHIR CodeableConcept's
    further codings, in order) are tried when `code` maps to no standard concept; `code`
    stays the source value. `fixed_table`: the event lands in `default_table` whatever its
    concept's domain (an allergy to a drug is an observation, never an exposure to it).
    """

    key: str
    person_key: str
    system: str
    code: str
    start: date | None
    default_table: str
    location: str
    raw: bytes
    value: float | None = None
    unit: str | None = None
    visit_key: str | None = None
    end: date | None = None
    value_code: tuple[str, str] | None = None
    text: str | None = None
    quantity: float | None = None
    detail: dict[str, str] | None = None
    operator: str | None = None
    warnings: tuple[str, ...] = ()
    alternate: tuple[str, str] | None = None
    provider_key: str | None = None
    value_sent: str | None = None
    unit_sent: str | None = None
    version: str | None = None
    replaces: str | None = None
    whole: str | None = None
    alternates: tuple[tuple[str, str], ...] = ()
    fixed_table: bool = False
    start_age: float | None = None
    end_age: float | None = None


#: The warning counted for each date of an event read from the person's age at it.
AGE_DATE = "fhir.onset.age"


def aged(event: SourceEvent, birth: date) -> tuple[SourceEvent, int]:
    """The event with its start and end read from its ages at them (`start_age`, `end_age`,
    in years: the first day of that year of age) where it has no such date and the person's
    `birth` is known, and how many it read."""
    if event.start_age is None and event.end_age is None:
        return event, 0
    start, end, read = event.start, event.end, 0
    if start is None and event.start_age is not None:
        start, read = at_age(birth, int(event.start_age), "years"), read + 1
    if end is None and event.end_age is not None:
        end, read = at_age(birth, int(event.end_age), "years"), read + 1
    return replace(event, start=start, end=end, start_age=None, end_age=None), read


class BlockEvent(NamedTuple):
    """One event of an `EventBlock`: the fields a table row of coded facts can carry
    (`value_sent`, `unit_sent`: see SourceEvent)."""

    key: str
    person_key: str
    code: str
    start: date
    value: float | None
    unit: str | None
    text: str | None
    location: str
    raw: bytes
    value_sent: str | None = None
    unit_sent: str | None = None


@dataclass(slots=True)
class EventBlock:
    """Many events of one mapped table, read in one go.

    Every event shares the code `system` and `default_table` (see SourceEvent);
    the writer converts a block column by column instead of record by record.
    """

    system: str
    default_table: str
    events: list[BlockEvent]

    def __len__(self) -> int:
        return len(self.events)

    def __reduce__(self) -> tuple:
        """Pickle column by column: several times cheaper than one tuple per event."""
        columns = [list(column) for column in zip(*self.events, strict=True)]
        return _event_block, (self.system, self.default_table, columns)

    def records(self) -> list[SourceEvent]:
        """The block as one SourceEvent per event."""
        return [
            SourceEvent(
                key=e.key,
                person_key=e.person_key,
                system=self.system,
                code=e.code,
                start=e.start,
                default_table=self.default_table,
                location=e.location,
                raw=e.raw,
                value=e.value,
                unit=e.unit,
                text=e.text,
                value_sent=e.value_sent,
                unit_sent=e.unit_sent,
            )
            for e in self.events
        ]


def _event_block(system: str, default_table: str, columns: list[list]) -> EventBlock:
    """An EventBlock from the columns its `__reduce__` pickled."""
    events = list(map(BlockEvent._make, zip(*columns, strict=True)))
    return EventBlock(system, default_table, events)


@dataclass(slots=True)
class SourceRow:
    """A row that is already OMOP CDM (from an OMOP source), ids still the source's own.

    `values` use CDM v5.4 column names; the writer gives the row and every id it
    refers to a store-stable id, keeping the original in the provenance record key.
    """

    key: str
    table: str
    values: dict[str, object]
    person_key: str | None
    location: str
    raw: bytes
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class SourceMerge:
    """Two records of one patient: everything filed under `old_person_key` moves to
    `person_key` (an HL7 merge or A24 link). With `restores` it is the undoing of such a
    link (an HL7 A37 unlink): `old_person_key` becomes its own person again, as `restores`
    (its patient record as the unlink sends it) says, with every record filed under it."""

    key: str
    person_key: str
    old_person_key: str
    location: str
    raw: bytes
    restores: SourcePerson | None = None


@dataclass(slots=True)
class Skipped:
    """A record left out on purpose by a documented rule (a status that is not a fact, a
    message type FLIP does not read): counted per rule, never stored, never quarantined.

    `withdraws` when the rule says the record is not a fact after all (entered in error,
    refuted, cancelled): the rows an earlier version of it produced are removed (not those
    of a newer `version`, see SourceEvent). `amends` when the record itself says an earlier
    version of it was sent (an HL7 OBX-11 D or W; a FHIR `meta.versionId` above 1): only
    then is a withdrawal that finds nothing stored warned about.
    """

    key: str | None
    location: str
    rule: str
    message: str
    withdraws: bool = False
    version: str | None = None
    amends: bool = False


@dataclass(slots=True)
class Unread:
    """A file or table in a source that the reader did not read, and why (not a record);
    `failed` when it could not be read (it may hold records), not left out by a rule."""

    location: str
    reason: str
    failed: bool = False


@dataclass(slots=True)
class Rejected:
    """A record that could not be read, with the rule it broke; `version` is the record's
    (as SourceEvent.version): a newer version loaded supersedes it."""

    key: str | None
    location: str
    rule: str
    message: str
    raw: bytes
    version: str | None = None


SourceRecord = (
    SourcePerson
    | SourceVisit
    | SourceEvent
    | EventBlock
    | SourceRow
    | SourceMerge
    | Rejected
    | Skipped
    | Unread
)
