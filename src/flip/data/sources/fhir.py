"""FHIR R4 files: Bundles (any type), single resources and NDJSON bulk exports (plain or gzip).

Each resource is validated with fhir.resources (its R4B models read R4 data), all but
the elements FLIP maps from no resource (UNMAPPED: narrative, meta, extensions…); one
that fails is yielded as `Rejected` with the reason and its raw bytes. A resource whose
status says it is not a fact (entered-in-error, refuted, cancelled, not-done) is
`Skipped` by its rule (see fhir_status). References (relative, absolute, urn:uuid,
contained and conditional `Type?identifier=sys|val`) resolve to record keys, so CDM
ids match whatever order resources arrive in.

Times of day are kept as local wall time: a dateTime's UTC offset is dropped, so the
`*_date` of a row is always the day of its `*_datetime`, as the source recorded it.
With a person identifier system, a Patient carrying an identifier of that system is
the person `Patient?identifier=SYSTEM|VALUE`, one person across resources and sources.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from flip.data.sources import (
    fhir_actors,
    fhir_attachment,
    fhir_dates,
    fhir_shapes,
    fhir_text,
    textfile,
)
from flip.data.sources.fhir_status import (
    ABSENT,
    DELETED,
    READ_THROUGH,
    WITHDRAWING,
    not_a_fact,
)
from flip.data.sources.identity import TOO_LONG, PersonIdentity, same_system
from flip.data.sources.records import (
    Rejected,
    Skipped,
    SourceEvent,
    SourcePerson,
    SourceRecord,
    SourceVisit,
    part_key,
)
from flip.data.sources.values import compared
from flip.data.terminology.visits import visit_concept
from flip.problems import first_problem

#: Resource types FLIP reads, in the order a bundle or folder is read.
SUPPORTED = (
    "Organization",
    "Location",
    "Practitioner",
    "Patient",
    "Encounter",
    "Medication",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Immunization",
    "Procedure",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
    "ImagingStudy",
    "Specimen",
)


#: The warning counted for each Condition or Observation whose code is only its text.
TEXT_CODE = "fhir.code.text"


#: The rule of a note skipped because the person already has its text that day (see
#: `_Converter.note`): one note per person, day and text, the first read kept.
DUPLICATE_NOTE = "fhir.note.duplicate"


#: The warning counted for each Encounter whose class maps to no OMOP Visit concept (it loads
#: with visit_concept_id 0, its class code kept as visit_source_value).
UNMAPPED_CLASS = "fhir.Encounter.class.unmapped"


#: The extension that carries a Patient's time of birth on birthDate.
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"


#: A dateTime whose seconds are 60: a leap second, which Python's datetime cannot hold.
_LEAP_SECOND = re.compile(r"(T\d\d:\d\d:)60")


def _as_date(value: object) -> date | None:
    """A FHIR date, dateTime or instant as a datetime in local wall time when it has a time
    of day (its UTC offset dropped), else as a date; partial dates (year, year-month) give None.
    A leap second (`23:59:60`) is kept as the second before it."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        if len(value) > 10 and _LEAP_SECOND.search(value):
            leap = _LEAP_SECOND.sub(r"\g<1>59", value, count=1).replace("Z", "+00:00")
            return datetime.fromisoformat(leap).replace(tzinfo=None)
        return date.fromisoformat(value[:10])
    return None


def _partial_birth(value: object) -> tuple[date | None, int]:
    """A birthDate and how many of its parts (year, month, day) the source gave: a partial
    date (`1970`, `1970-05`) is its first day, so no event is wrongly before birth."""
    if isinstance(value, str) and len(value) in (4, 7):
        parts = [int(p) for p in value.split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, 1), len(parts)
    return _as_date(value), 3


class References:
    """Resolves references to record keys and remembers what later resources point at."""

    def __init__(self, person_identifier: PersonIdentity | str | None = None) -> None:
        self.identity = PersonIdentity.of(person_identifier)
        self.full_urls: dict[str, str] = {}
        self.identifiers: dict[tuple[str, str, str], str] = {}
        self.medications: dict[str, tuple[str, str]] = {}
        self.persons: dict[str, str] = {}
        self.actors: set[str] = set()
        #: The key of the first note read per (person key, day, SHA-256 of its text).
        self.notes: dict[tuple[str, date | None, str], str] = {}

    def person(self, reference: str | None) -> str | None:
        """The person key a subject reference names (its business identity when it has one)."""
        key = self.resolve(reference)
        return self.persons.get(key, key) if key is not None else None

    def actor(self, reference: Any) -> str | None:
        """The key of the Practitioner, Organization or Location a Reference names, if read."""
        key = self.resolve(getattr(reference, "reference", None))
        return key if key in self.actors else None

    def key_of(self, resource: dict, full_url: str | None) -> str:
        """The record key of a resource: Type/id, else its fullUrl."""
        key = f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else full_url
        if key is None:
            raise ValueError("resource has neither id nor fullUrl")
        if full_url:
            self.full_urls[full_url] = key
        for ident in resource.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("value"):
                system = same_system(ident.get("system") or "")
                self.identifiers[(resource["resourceType"], system, ident["value"])] = key
        return key

    def is_person_system(self, system: str | None) -> bool:
        """Whether `system` is the person identifier system, as sites spell it."""
        return self.identity is not None and self.identity.is_system(system)

    def resolve(self, reference: str | None) -> str | None:
        """The key a reference points to (unresolved conditional references stay as written)."""
        if not reference:
            return None
        if reference in self.full_urls:
            return self.full_urls[reference]
        if reference.startswith("urn:"):
            return reference
        if "?" in reference:
            kind, _, query = reference.partition("?")
            kind = kind.rsplit("/", 1)[-1]
            for token in parse_qs(query).get("identifier", []):
                system, _, value = token.rpartition("|")
                found = self.identifiers.get((kind, same_system(system), value))
                if found:
                    return found
                if kind == "Patient" and self.identity and self.identity.is_system(system):
                    return self.identity.key(value) or reference
            return reference
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return "/".join(parts[-2:])


def _coding(concept: Any) -> tuple[str, str] | None:
    """(system, code) of a CodeableConcept's first coding that has a code."""
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.code:
            return coding.system or "", coding.code
    return None


def _label(concept: Any) -> str:
    """A CodeableConcept's text, else the display of its first coding that has one."""
    if concept is None:
        return ""
    displays = (c.display for c in concept.coding or [] if c.display)
    return concept.text or next(displays, "")


def _others(concept: Any) -> dict[str, Any]:
    """The event field `alternates`: a CodeableConcept's codings after its first coded one,
    tried in order when that maps to no standard concept (Epic sends its own code first)."""
    codings = (
        [(c.system or "", c.code) for c in (concept.coding or []) if c.code] if concept else []
    )
    return {"alternates": tuple(codings[1:])} if len(codings) > 1 else {}


class _Converter:
    """Turns one validated resource into a record."""

    def __init__(self, refs: References, key: str, location: str, raw: bytes) -> None:
        self.refs, self.key, self.location, self.raw = refs, key, location, raw
        #: Whether a date of the record was read from a partial date (fhir_dates.PARTIAL).
        self.partial = False
        #: Whether the record's code is its CodeableConcept's text alone (TEXT_CODE).
        self.texted = False

    def when(self, value: object, last: bool = False) -> date | None:
        """A date or dateTime (see _as_date); a partial one (`2015`, `2015-06`) is its first
        day (a death's: its last, so no event of that month or year falls after it),
        counted as fhir.date.partial."""
        found = _as_date(value)
        if found is None and (day := fhir_dates.partial_day(value, last)) is not None:
            self.partial = True
            return day
        return found

    def period(self, start: Any, period: Any) -> tuple[date | None, date | None]:
        if start is not None:
            return self.when(start), None
        if period is not None:
            return self.when(period.start), self.when(period.end, last=True)
        return None, None

    def dated(self) -> tuple[str, ...]:
        """The warnings of the record's dates (and of a code read from text alone)."""
        partial = (fhir_dates.PARTIAL,) if self.partial else ()
        return (*partial, TEXT_CODE) if self.texted else partial

    def coded(self, concept: Any) -> tuple[str, str] | None:
        """(system, code) of a CodeableConcept's first coded coding; without one, its text
        as the code of no system (OMOP: concept 0, the text as source value), counted as
        TEXT_CODE: the record is a fact even if unmapped."""
        found = _coding(concept)
        text = concept.text.strip() if found is None and concept and concept.text else ""
        if text:
            self.texted = True
            return "", text
        return found

    def reject(self, rule: str, message: str) -> Rejected:
        return Rejected(self.key, self.location, rule, message, self.raw)

    def event(
        self,
        model: Any,
        subject: Any,
        code: tuple[str, str] | None,
        start: date | None,
        table: str,
        **extra: Any,
    ) -> SourceRecord:
        person = self.subject(model, subject)
        if person is None:
            return self.reject(
                "fhir.subject.missing", f"{model.get_resource_type()} has no subject"
            )
        if code is None:
            return self.reject(
                "fhir.code.missing", f"{model.get_resource_type()} has no coded value"
            )
        field = _ENCOUNTER.get(model.get_resource_type(), "encounter")
        encounter = getattr(model, field) if field else None
        visit = self.refs.resolve(encounter.reference) if encounter is not None else None
        return SourceEvent(
            self.key,
            person,
            code[0],
            code[1],
            start,
            table,
            self.location,
            self.raw,
            visit_key=visit,
            provider_key=self._performer(model),
            warnings=self.dated(),
            **extra,
        )

    def subject(self, model: Any, subject: Any) -> str | None:
        """The person key a subject Reference names: by reference, by a logical identifier
        (`subject.identifier`), or by the identifiers of the contained Patient it points
        at (`#id`), each read as the conditional reference `Patient?identifier=SYS|VALUE`."""
        if subject is None:
            return None
        reference = subject.reference
        identifiers = [subject.identifier] if subject.identifier is not None else []
        if reference and reference.startswith("#"):
            inner = next(
                (c for c in model.contained or [] if c.id == reference[1:]),
                None,
            )
            if inner is None or inner.get_resource_type() != "Patient":
                return None
            reference, identifiers = None, list(inner.identifier or [])
        if reference:
            return self.refs.person(reference)
        conditional = [
            f"Patient?identifier={i.system or ''}|{i.value}" for i in identifiers if i.value
        ]
        found = [(c, self.refs.person(c)) for c in conditional]
        resolved = (key for asked, key in found if key != asked)
        return next(resolved, None) or next((key for _, key in found), None)

    def _performer(self, m: Any) -> str | None:
        """The key of the first read Practitioner who performed, asserted or asked for `m`."""
        if not self.refs.actors:
            return None
        refs = []
        for name in _PERFORMERS.get(m.get_resource_type(), ()):
            found = getattr(m, name)
            refs.extend(found if isinstance(found, list) else [found] if found else [])
        for ref in refs:
            key = self.refs.actor(ref.actor if "actor" in type(ref).model_fields else ref)
            if key is not None and key.startswith("Practitioner/"):
                return key
        return None

    def patient(self, m: Any) -> SourceRecord:
        identifier = _record_number(m.identifier or []) or self.key
        key = self.key
        chosen = next(
            (
                i.value
                for i in m.identifier or []
                if i.value and i.value.strip() and self.refs.is_person_system(i.system)
            ),
            None,
        )
        warnings: tuple[str, ...] = ()
        identified = self.refs.identity.key(chosen) if chosen and self.refs.identity else None
        if chosen and identified is None:
            warnings = (f"fhir.{TOO_LONG}",)
        elif chosen and identified:
            identifier, key = chosen, identified
            self.refs.persons[self.key] = key
        born, parts = _birth(m)
        died = self.when(m.deceasedDateTime, last=True)
        return SourcePerson(
            key,
            identifier,
            born,
            m.gender,
            self.location,
            self.raw,
            death_date=died,
            warnings=(*warnings, *self.dated()),
            birth_parts=parts,
        )

    def encounter(self, m: Any) -> SourceRecord:
        person = self.subject(m, m.subject)
        if person is None:
            return self.reject("fhir.subject.missing", "Encounter has no subject")
        start, end = self.period(None, m.period)
        individuals = [p.individual for p in m.participant or [] if p.individual]
        practitioners = [self.refs.actor(i) for i in individuals]
        provider = next((k for k in practitioners if k and k.startswith("Practitioner/")), None)
        klass = m.class_fhir.code if m.class_fhir.system != fhir_shapes.ABSENT else ""
        unmapped = (UNMAPPED_CLASS,) if klass and not visit_concept(klass) else ()
        return SourceVisit(
            self.key,
            person,
            start,
            end or start,
            klass,
            self.location,
            self.raw,
            provider_key=provider,
            care_site_key=self.refs.actor(m.serviceProvider),
            warnings=(*self.dated(), *unmapped),
        )

    def condition(self, m: Any) -> SourceRecord:
        """Onset: its dateTime, period start or age (the first day of that year of age,
        read once the person's birth date is known), else the recorded date. End: the
        abatement dateTime, period end (else start) or age; a partial one is its last day, so a
        condition never ends before the month or year it ended in began."""
        start = self.when(m.onsetDateTime) or (
            self.when(m.onsetPeriod.start) if m.onsetPeriod else None
        )
        age = _years(m.onsetAge) if start is None else None
        abatement = m.abatementPeriod
        end = self.when(m.abatementDateTime, last=True) or (
            self.when(abatement.end, last=True) or self.when(abatement.start, last=True)
            if abatement
            else None
        )
        return self.event(
            m,
            m.subject,
            self.coded(m.code),
            start or (None if age is not None else self.when(m.recordedDate)),
            "condition_occurrence",
            end=end,
            start_age=age,
            end_age=_years(m.abatementAge) if end is None else None,
            **_others(m.code),
        )

    def observation(self, m: Any) -> list[SourceRecord] | SourceRecord:
        start, _ = self.period(m.effectiveDateTime or m.effectiveInstant, m.effectivePeriod)
        start = start or self.when(m.issued)
        out = []
        if not m.component or _has_value(m):
            table, values = _value(m)
            code, more = self.coded(m.code), _others(m.code)
            out.append(
                self.event(m, m.subject, code, start, table, whole=self.key, **more, **values)
            )
        for i, part in enumerate(m.component or []):
            if part.dataAbsentReason is not None and not _has_value(part):
                why = "Observation component has no value, only a dataAbsentReason"
                out.append(Skipped(part_key(self.key, i), self.location, ABSENT, why))
                continue
            c = _Converter(self.refs, part_key(self.key, i), self.location, self.raw)
            c.partial = self.partial
            table, values = _value(part)
            code, more = c.coded(part.code), _others(part.code)
            out.append(c.event(m, m.subject, code, start, table, whole=self.key, **more, **values))
        return out

    def medication(self, m: Any) -> Skipped:
        """A Medication is no fact: its code is read into the resources that name it."""
        code = _coding(m.code)
        if code:
            self.refs.medications[self.key] = code
        why = "Medication is read through the MedicationRequest/Statement/Administration naming it"
        return Skipped(self.key, self.location, READ_THROUGH, why)

    def _drug(self, m: Any) -> tuple[str, str] | None:
        if m.medicationCodeableConcept is not None:
            return _coding(m.medicationCodeableConcept)
        ref = m.medicationReference.reference if m.medicationReference else None
        for contained in getattr(m, "contained", None) or []:
            if ref == f"#{contained.id}" and contained.get_resource_type() == "Medication":
                return _coding(contained.code)
        return self.refs.medications.get(self.refs.resolve(ref) or "")

    def medication_request(self, m: Any) -> SourceRecord:
        validity = m.dispenseRequest.validityPeriod if m.dispenseRequest else None
        start = self.when(m.authoredOn) or (self.when(validity.start) if validity else None)
        qty = (
            m.dispenseRequest.quantity.value
            if m.dispenseRequest and m.dispenseRequest.quantity
            else None
        )
        return self.event(
            m,
            m.subject,
            self._drug(m),
            start,
            "drug_exposure",
            end=self.when(validity.end) if validity else None,
            quantity=float(qty) if qty is not None else None,
        )

    def medication_statement(self, m: Any) -> SourceRecord:
        start, end = self.period(m.effectiveDateTime, m.effectivePeriod)
        return self.event(
            m,
            m.subject,
            self._drug(m),
            start or self.when(m.dateAsserted),
            "drug_exposure",
            end=end,
        )

    def medication_administration(self, m: Any) -> SourceRecord:
        start, end = self.period(m.effectiveDateTime, m.effectivePeriod)
        route = _coding(m.dosage.route) if m.dosage and m.dosage.route else None
        return self.event(
            m,
            m.subject,
            self._drug(m),
            start,
            "drug_exposure",
            end=end,
            detail={"route": route[1]} if route else {},
        )

    def immunization(self, m: Any) -> SourceRecord:
        return self.event(
            m,
            m.patient,
            _coding(m.vaccineCode),
            self.when(m.occurrenceDateTime),
            "drug_exposure",
            **_others(m.vaccineCode),
        )

    def procedure(self, m: Any) -> SourceRecord:
        start, end = self.period(m.performedDateTime, m.performedPeriod)
        return self.event(
            m, m.subject, _coding(m.code), start, "procedure_occurrence", end=end, **_others(m.code)
        )

    def allergy(self, m: Any) -> SourceRecord:
        start = self.when(m.onsetDateTime) or self.when(m.recordedDate)
        # the allergen's code names a substance (a drug, often): an observation, whatever
        # its domain, never an exposure to it
        code = _coding(m.code)
        return self.event(
            m, m.patient, code, start, "observation", fixed_table=True, **_others(m.code)
        )

    def diagnostic_report(self, m: Any) -> SourceRecord:
        """A report whose presentedForm carries text is a note of that text (its conclusion
        added when the text does not hold it); any other report without results is a
        measurement of its code, its conclusion as the text."""
        start, _ = self.period(m.effectiveDateTime, m.effectivePeriod)
        start = start or self.when(m.issued)
        forms = [form for form in m.presentedForm or [] if fhir_attachment.is_text(form)]
        if not forms:
            return self.event(
                m, m.subject, _coding(m.code), start, "measurement", text=m.conclusion
            )
        try:
            texts = [fhir_attachment.attachment_text(form) for form in forms]
        except ValueError:
            return self.reject("fhir.note.encoding", "DiagnosticReport text is not text")
        conclusion = (m.conclusion or "").strip()
        if conclusion and not any(conclusion in text for text in texts):
            texts.append(conclusion)
        title = forms[0].title or _label(m.code)
        return self.note(m, self.coded(m.code) or ("", "note"), start, "\n\n".join(texts), title)

    def document(self, m: Any) -> SourceRecord:
        attachment = m.content[0].attachment
        if attachment.data is None:
            return self.reject("fhir.note.no_text", "DocumentReference carries no inline text")
        try:
            text = fhir_attachment.attachment_text(attachment)
        except ValueError:
            return self.reject("fhir.note.encoding", "DocumentReference text is not UTF-8")
        start, _ = self.period(None, m.context.period if m.context else None)
        code = _coding(m.type) or ("", "note")
        title = attachment.title or m.description or ""
        return self.note(m, code, self.when(m.date) or start, text, title)

    def note(
        self, m: Any, code: tuple[str, str], start: date | None, text: str, title: str
    ) -> SourceRecord:
        """A note of `text`, or, when a record read before gave the same person the same
        text on the same day (Synthea writes each note as a DiagnosticReport and again as
        a DocumentReference), skipped by rule DUPLICATE_NOTE."""
        record = self.event(m, m.subject, code, start, "note", text=text, detail={"title": title})
        if type(record) is not SourceEvent:
            return record
        day = start.date() if isinstance(start, datetime) else start
        digest = hashlib.sha256(text.strip().encode()).hexdigest()
        first = self.refs.notes.setdefault((record.person_key, day, digest), self.key)
        if first == self.key:
            return record
        why = f"the person's note of that day from {first} has the same text"
        return Skipped(self.key, self.location, DUPLICATE_NOTE, why, withdraws=True)

    def imaging_study(self, m: Any) -> SourceRecord:
        uid = next((i.value for i in m.identifier or [] if i.system == "urn:dicom:uid"), None)
        if uid is None:
            return self.reject(
                "fhir.imaging.no_uid", "ImagingStudy has no urn:dicom:uid identifier"
            )
        series = m.series[0] if m.series else None
        modality = (series.modality if series else None) or (m.modality[0] if m.modality else None)
        if modality is None:
            return self.reject("fhir.imaging.no_modality", "ImagingStudy names no modality")
        detail = {"study_uid": uid.removeprefix("urn:oid:")}
        if series is not None:
            detail["series_uid"] = series.uid
        return self.event(
            m,
            m.subject,
            (modality.system or "", modality.code),
            self.when(m.started),
            "image_occurrence",
            detail=detail,
        )

    def specimen(self, m: Any) -> SourceRecord:
        collected = m.collection.collectedDateTime if m.collection else None
        return self.event(
            m,
            m.subject,
            _coding(m.type),
            self.when(collected) or self.when(m.receivedTime),
            "specimen",
        )


#: Per event resource type, the elements that may name the Practitioner behind it, in order.
_PERFORMERS = {
    "Observation": ("performer",),
    "Condition": ("asserter", "recorder"),
    "AllergyIntolerance": ("asserter", "recorder"),
    "Procedure": ("performer",),
    "MedicationRequest": ("requester",),
    "MedicationStatement": ("informationSource",),
    "MedicationAdministration": ("performer",),
    "Immunization": ("performer",),
    "DiagnosticReport": ("performer",),
    "DocumentReference": ("author",),
}

#: The element naming an event's encounter, where it is not `encounter` (None: it has none).
_ENCOUNTER = {
    "MedicationAdministration": "context",
    "MedicationStatement": "context",
    "DocumentReference": None,
    "Specimen": None,
}


def _unit(quantity: Any) -> str | None:
    """A Quantity's unit: its code when that is UCUM (or has no system), else its text
    (a SNOMED CT or local unit code says nothing to a UCUM table)."""
    ucum = quantity.system in (None, "http://unitsofmeasure.org")
    return (quantity.code if ucum else None) or quantity.unit or quantity.code


#: The value[x] elements of an Observation and of its components.
_VALUES = tuple(
    f"value{kind}"
    for kind in [
        "Quantity",
        "CodeableConcept",
        "String",
        "Boolean",
        "Integer",
        "Range",
        "Ratio",
        "SampledData",
        "Time",
        "DateTime",
        "Period",
    ]
)


#: The units of an Age in years (UCUM `a`, and as people write it).
_YEARS = {"a", "year", "years", "yr", "yrs", "y"}


def _years(quantity: Any) -> float | None:
    """An Age in years (0 to 150), else None: other units are not read."""
    if quantity is None or quantity.value is None or quantity.comparator:
        return None
    unit = (quantity.code or quantity.unit or "").strip().lower()
    years = float(quantity.value)
    return years if unit in _YEARS and 0 <= years <= 150 else None


def _has_value(element: Any) -> bool:
    """Whether an Observation or its component carries a value[x]."""
    return any(getattr(element, name, None) is not None for name in _VALUES)


def _value(element: Any) -> tuple[str, dict[str, Any]]:
    """(default table, event fields) for the value[x] of an Observation or its component:
    a Quantity or integer is a number, a CodeableConcept a coded value, a string a number
    with its comparator or text; boolean, time, dateTime, Period, Range and Ratio values
    are kept as their text."""
    quantity, concept, string = element.valueQuantity, element.valueCodeableConcept, None
    if element.valueInteger is not None:
        return "measurement", {"value": float(element.valueInteger)}
    if element.valueString is not None:
        string = element.valueString
    elif quantity is None and concept is None:
        string = _value_text(element)
    if quantity is not None:
        value = float(quantity.value) if quantity.value is not None else None
        out = {"value": value, "unit": _unit(quantity)}
        if quantity.comparator:
            out["operator"] = quantity.comparator
        return "measurement", out
    if concept is not None:
        return "observation", {"value_code": _coding(concept)}
    found = compared(string) if string else None
    if found is not None and found[0] is not None:
        return "measurement", {"value": found[1], "operator": found[0]}
    return "observation", {"text": string}


def _value_text(element: Any) -> str | None:
    """The text of a boolean, time, dateTime, Period, Range or Ratio value, else None."""
    if element.valueBoolean is not None:
        return "true" if element.valueBoolean else "false"
    if element.valueTime is not None or element.valueDateTime is not None:
        value = element.valueTime if element.valueTime is not None else element.valueDateTime
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    period, ranged, ratio = element.valuePeriod, element.valueRange, element.valueRatio
    if period is not None:
        return f"{_bound(period.start)}/{_bound(period.end)}"
    if ranged is not None:
        return f"{_amount(ranged.low)} - {_amount(ranged.high)}"
    if ratio is not None:
        return f"{_amount(ratio.numerator)}/{_amount(ratio.denominator)}"
    return None


def _bound(value: Any) -> str:
    return "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)


def _amount(quantity: Any) -> str:
    """A Quantity as text: its comparator, value and unit."""
    if quantity is None or quantity.value is None:
        return ""
    unit = _unit(quantity)
    return f"{quantity.comparator or ''}{quantity.value}{' ' + unit if unit else ''}"


#: The HL7 v2 identifier type table FHIR types Patient.identifier with, and its MR code.
IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _record_number(identifiers: list[Any]) -> str | None:
    """A Patient's source value: its first identifier typed MR (medical record number,
    v2-0203), else its first identifier with a value (an SSN first is not the MRN)."""
    valued = [i for i in identifiers if i.value]
    for ident in valued:
        codings = ident.type.coding or [] if ident.type is not None else []
        if any(c.code == "MR" and c.system in (IDENTIFIER_TYPES, None) for c in codings):
            return ident.value
    return valued[0].value if valued else None


def _birth(m: Any) -> tuple[date | None, int]:
    """A Patient's birthDate (with its time of day when the birthTime extension gives it)
    and how many of its parts the source gave (see `_partial_birth`)."""
    for extension in (m.birthDate__ext.extension or []) if m.birthDate__ext else []:
        if extension.url == BIRTH_TIME and isinstance(extension.valueDateTime, datetime):
            return _as_date(extension.valueDateTime), 3
    return _partial_birth(m.birthDate)


_HANDLERS: dict[str, Callable[[_Converter, Any], Any]] = {
    "Patient": _Converter.patient,
    "Encounter": _Converter.encounter,
    "Medication": _Converter.medication,
    "Condition": _Converter.condition,
    "Observation": _Converter.observation,
    "MedicationRequest": _Converter.medication_request,
    "MedicationStatement": _Converter.medication_statement,
    "MedicationAdministration": _Converter.medication_administration,
    "Immunization": _Converter.immunization,
    "Procedure": _Converter.procedure,
    "AllergyIntolerance": _Converter.allergy,
    "DiagnosticReport": _Converter.diagnostic_report,
    "DocumentReference": _Converter.document,
    "ImagingStudy": _Converter.imaging_study,
    "Specimen": _Converter.specimen,
    "Practitioner": lambda c, m: fhir_actors.provider(c.key, m, c.location, c.raw),
    "Organization": lambda c, m: fhir_actors.care_site(c.key, m, c.location, c.raw),
    "Location": lambda c, m: fhir_actors.location(c.key, m, c.location, c.raw),
}


#: Optional elements FLIP maps from no resource: they are not validated (a bad one cannot
#: cost a record what FLIP does not store) and stay in the raw bytes kept for provenance.
#: `modifierExtension` is not among them: it can change what a resource means.
UNMAPPED = frozenset(
    ("text", "meta", "extension", "category", "interpretation", "referenceRange", "note")
)


def _validate(kind: str, resource: dict) -> tuple[Any, tuple[str, ...]]:
    """The resource's model, and the warning rules of optional elements nulled to get it.

    Elements in UNMAPPED are left out. An element that fails validation is dropped and the
    rest validated again; if the resource still fails, the first error stands when a
    required element was the bad one, else the second (the real cause: an STU3 Immunization
    fails for its `notGiven` and `date`, and then for having no occurrence).
    """
    model_class = get_fhir_model_class(kind)
    resource = {name: value for name, value in resource.items() if name not in UNMAPPED}
    warned: tuple[str, ...] = ()
    try:
        return model_class.model_validate(resource), ()
    except ValidationError as exc:
        bad = _bad_elements(exc, resource)
        if not bad:
            raise
        repaired = {n: fixed for n in bad for fixed, did in [fhir_dates.repair(resource[n])] if did}
        if repaired:  # a date-time outside the spec's pattern whose meaning is plain
            resource, warned = {**resource, **repaired}, (fhir_dates.REPAIRED,)
            try:
                return model_class.model_validate(resource), warned
            except ValidationError as again:
                exc, bad = again, _bad_elements(again, resource)
                if not bad:
                    raise again from None
        trimmed = {name: value for name, value in resource.items() if name not in bad}
        try:
            model = model_class.model_validate(trimmed)
        except ValidationError as again:
            if all(e["loc"] and str(e["loc"][0]) in bad for e in again.errors()):
                raise exc from None
            raise again from None
        invalid = tuple(f"fhir.{kind}.{name.lstrip('_')}.invalid" for name in sorted(bad))
        return model, (*warned, *invalid)


def _bad_elements(exc: ValidationError, resource: dict) -> set[str]:
    """The top-level elements of `resource` a validation error names (not resourceType)."""
    bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & resource.keys()
    bad.discard("resourceType")
    return bad


def _known_type(kind: str) -> bool:
    """Whether `kind` names a FHIR resource type at all."""
    try:
        get_fhir_model_class(kind)
    except (ValueError, ImportError):
        return False
    return True


def _records(
    resource: object, raw: bytes, location: str, refs: References, full_url: str | None = None
) -> list[SourceRecord]:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [Rejected(None, location, "fhir.not_a_resource", "no resourceType", raw)]
    kind = resource["resourceType"]
    if kind == "Bundle":
        return list(read_bundle(resource, location, refs))
    warnings: tuple[str, ...] = ()
    if kind not in _HANDLERS and _known_type(kind):
        # read for nothing, so it needs no identity: a searchset's OperationOutcome has none
        with contextlib.suppress(ValueError):
            full_url = refs.key_of(resource, full_url)
        return [Skipped(full_url, location, "fhir.type.not_read", f"{kind} is not read")]
    try:
        key = refs.key_of(resource, full_url)
        if kind not in _HANDLERS:
            return [Rejected(key, location, "fhir.unsupported_type", f"{kind} is not FHIR", raw)]
        if kind in fhir_actors.ACTORS:
            refs.actors.add(key)
        status = not_a_fact(resource)
        if status is not None:
            withdraws = status[0] in WITHDRAWING
            # the results of a withdrawn report are withdrawn with it (keys `key#…`)
            results = [] if withdraws else _contained_results(resource, key, location, refs)
            version = version_of(resource)
            amends = withdraws and amends_earlier(resource)
            skipped = Skipped(
                key, location, *status, withdraws=withdraws, version=version, amends=amends
            )
            return [*results, skipped]
        if kind == "Encounter":
            resource, shaped = fhir_shapes.encounter_class(resource)
            warnings += shaped
        model, invalid = _validate(kind, resource)
        warnings += invalid
        out = _HANDLERS[kind](_Converter(refs, key, location, raw), model)
    except ValidationError as exc:
        message = f"{kind}.{first_problem(exc)}"
        return [Rejected(_id(resource, full_url), location, "fhir.invalid", message, raw)]
    except (ValueError, TypeError, KeyError) as exc:
        rejected = Rejected(
            _id(resource, full_url), location, "fhir.invalid", f"{kind}: {exc}", raw
        )
        return [rejected]
    if out is None:
        return []
    out = out if isinstance(out, list) else [out]
    if warnings:
        for record in out:
            if hasattr(record, "warnings"):
                record.warnings = (*record.warnings, *warnings)
    version = version_of(resource)
    if version is not None:
        for record in out:
            if hasattr(record, "version"):
                record.version = version
    # a report read as a note: the results it contains are read too
    return [*_contained_results(resource, key, location, refs), *out]


def version_of(resource: dict) -> str | None:
    """A resource version as a text that sorts in version order: meta.versionId (digits
    compare as numbers), then meta.lastUpdated in UTC; None when the resource has neither."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return None
    number = meta.get("versionId")
    number = str(number).strip() if isinstance(number, str | int) else ""
    if number.isdigit():
        number = number.zfill(20)
    when = _utc(meta.get("lastUpdated"))
    return f"{number}|{when}"[:100] if number or when else None


def amends_earlier(resource: dict) -> bool:
    """Whether the resource says an earlier version of it was sent: a `meta.versionId`
    that is a whole number above 1 (any other versionId, or none, says nothing)."""
    meta = resource.get("meta")
    number = meta.get("versionId") if isinstance(meta, dict) else None
    number = str(number).strip() if isinstance(number, str | int) else ""
    return number.isdigit() and int(number) > 1


def _id(resource: dict, full_url: str | None = None) -> str | None:
    """A rejected resource's record key, `Type/id` as when it loads (else its fullUrl), so
    that its corrected version releases the quarantine row (the ingest drops a key too long
    to keep)."""
    found = resource.get("id")
    if isinstance(found, str) and found:
        return f"{resource['resourceType']}/{found}"
    return full_url if isinstance(full_url, str) else None


def _contained_results(
    report: dict, key: str, location: str, refs: References
) -> list[SourceRecord]:
    """The records of the Observations a skipped DiagnosticReport panel contains and names
    as results (`#id`): read like any Observation, with the report's subject and time when
    they carry none, keyed `DiagnosticReport/id#id`."""
    if report["resourceType"] != "DiagnosticReport":
        return []
    named = {
        r.get("reference", "")[1:]
        for r in report.get("result") or []
        if isinstance(r, dict) and str(r.get("reference", "")).startswith("#")
    }
    out: list[SourceRecord] = []
    for index, inner in enumerate(report.get("contained") or []):
        if not isinstance(inner, dict) or inner.get("id") not in named:
            continue
        if inner.get("resourceType") != "Observation":
            continue
        inherited = {
            name: report[name]
            for name in ("subject", "encounter", "effectiveDateTime", "effectivePeriod", "issued")
            if name in report and not any(k.startswith(name[:9]) for k in inner)
        }
        observation = {**inherited, **{k: v for k, v in inner.items() if k != "id"}}
        raw = orjson.dumps(observation)
        where = f"{location}#contained[{index}]"
        out += _records(observation, raw, where, refs, f"{key}#{inner['id']}")
    return out


#: The UTF-8 byte order mark some Windows tools write first; JSON parsers refuse it.
BOM = b"\xef\xbb\xbf"


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_lines(
    lines: Iterable[bytes | None], source: str, refs: References | None = None
) -> Iterator[SourceRecord]:
    """Yield the records of NDJSON lines one by one; `source:N` locates line N. A line given
    as None was too long to read (`bounded_lines`): quarantined as `json.line_too_long`."""
    refs = refs or References()
    for number, line in enumerate(lines, start=1):
        if line is None:
            message = f"{source}:{number}: the line is longer than {textfile.MAX_LINE:,} bytes"
            yield Rejected(None, f"{source}:{number}", "json.line_too_long", message, b"")
            continue
        raw = line.rstrip(b"\r\n")
        if number == 1:
            raw = raw.removeprefix(BOM)
        if not raw.strip():
            continue
        location = f"{source}:{number}"
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            resource = fhir_text.legacy_json(raw)
            if resource is None:
                yield Rejected(None, location, "json.malformed", str(exc), raw)
                continue
            yield from _warned(_records(resource, raw, location, refs), fhir_text.NOT_UTF8)
            continue
        yield from _records(resource, raw, location, refs)


def _warned(records: list[SourceRecord], rule: str) -> list[SourceRecord]:
    """`records`, each that can carry warnings now carrying `rule` too."""
    for record in records:
        if hasattr(record, "warnings"):
            record.warnings = (*record.warnings, rule)
    return records


def read_ndjson(path: Path, refs: References | None = None) -> Iterator[SourceRecord]:
    """Yield the records of an NDJSON file (plain or gzip) line by line, never reading it whole."""
    with _open(path) as handle:
        codec = fhir_text.wide_codec(handle)
        lines = fhir_text.wide_lines(handle, codec) if codec else bounded_lines(handle)
        yield from read_lines(lines, str(path), refs)


def bounded_lines(handle: BinaryIO) -> Iterator[bytes | None]:
    """The lines of a binary file, None for one longer than textfile.MAX_LINE (read past in
    chunks, never held whole: a gzip bomb of one line cannot exhaust memory)."""
    limit = textfile.MAX_LINE
    for line in iter(partial(handle.readline, limit + 1), b""):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (more := handle.readline(1024 * 1024)) and not more.endswith(b"\n"):
            pass
        yield None


def read_json(path: Path, refs: References | None = None) -> Iterator[SourceRecord]:
    """Yield the records of a JSON file holding a Bundle or a single resource."""
    refs = refs or References()
    with _open(path) as handle:
        codec = fhir_text.wide_codec(handle)
        data = handle.read()
    data = data.decode(codec, errors="replace").encode() if codec else data.removeprefix(BOM)
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        document = fhir_text.legacy_json(data)
        if document is None:
            yield Rejected(None, str(path), "json.malformed", str(exc), data)
        else:
            yield from _warned(_records(document, data, str(path), refs), fhir_text.NOT_UTF8)
        return
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        yield from _records(document, data, str(path), refs)
        return
    yield from read_bundle(document, str(path), refs)


def read_bundle(bundle: dict, source: str, refs: References) -> Iterator[SourceRecord]:
    """Yield the records of a Bundle's entries, patients first, whatever the entry order.
    Entries on one resource apply in the order they happened (see _order): the newest
    action on a resource (a PUT, or a DELETE) is the one that stays."""
    entries = []
    deletes = []
    kind = bundle.get("type")
    for index, entry in enumerate(bundle.get("entry") or []):
        location = f"{source}#entry[{index}]"
        deleted = _deleted(entry, location, refs)
        if deleted is not None:
            deletes.append((_order(kind, entry, None, index), deleted))
            continue
        resource = entry.get("resource") if isinstance(entry, dict) else None
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            with contextlib.suppress(ValueError):
                refs.key_of(resource, full_url)
        order = _order(kind, entry, resource, index)
        entries.append((order, resource, orjson.dumps(resource), location, full_url))
    if kind == "transaction":
        # FHIR processes a transaction's DELETEs first, whatever their place
        yield from (deleted for _, deleted in deletes)
        deletes = []
    ranked: list[tuple[int, tuple, Any]] = [(_rank(e[1]), e[0], e) for e in entries]
    ranked += [(_rank_of_key(d.key), order, d) for order, d in deletes]
    ranked.sort(key=lambda item: item[:2])
    for *_, item in ranked:
        if isinstance(item, Skipped):
            yield item
            continue
        _, resource, raw, location, full_url = item
        yield from _records(resource, raw, location, refs, full_url)


def _order(kind: object, entry: object, resource: object, index: int) -> tuple:
    """Where an entry goes among the entries on its resource: in a history Bundle by when
    it happened (response.lastModified, else meta.lastUpdated; the spec lists newest
    first, so entries without a time go in reverse order, before timed ones); in any
    other Bundle by its place."""
    if kind != "history":
        return ("", index)
    response = entry.get("response") if isinstance(entry, dict) else None
    stamp = _utc(response.get("lastModified") if isinstance(response, dict) else None)
    if not stamp and isinstance(resource, dict) and isinstance(resource.get("meta"), dict):
        stamp = _utc(resource["meta"].get("lastUpdated"))
    return (stamp, -index)


def _utc(value: object) -> str:
    """An instant as UTC ISO text that sorts in time order; empty when it does not parse."""
    if not isinstance(value, str):
        return ""
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (stamp.astimezone(UTC) if stamp.tzinfo else stamp).isoformat()


def _deleted(entry: object, location: str, refs: References) -> Skipped | None:
    """The deletion a transaction or history Bundle entry asks for (`request.method`
    DELETE, no resource): skipped by rule DELETED, withdrawing what the resource produced
    (versioned by response.lastModified: an older DELETE leaves a newer stored version)."""
    request = entry.get("request") if isinstance(entry, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    if not isinstance(method, str) or method.upper() != "DELETE" or entry.get("resource"):
        return None
    url = request.get("url")
    key = refs.resolve(url) if isinstance(url, str) else None
    response = entry.get("response")
    stamp = _utc(response.get("lastModified") if isinstance(response, dict) else None)
    return Skipped(
        key,
        location,
        DELETED,
        f"DELETE {url}",
        withdraws=key is not None,
        amends=True,
        version=f"|{stamp}" if stamp else None,
    )


def _rank_of_key(key: str | None) -> int:
    """The reading rank of the resource type a record key (`Type/id`) names."""
    kind = key.split("/", 1)[0] if key else None
    return SUPPORTED.index(kind) if kind in SUPPORTED else len(SUPPORTED)


def _rank(resource: object) -> int:
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return SUPPORTED.index(kind) if kind in SUPPORTED else len(SUPPORTED)


def read_path(
    path: Path, person_identifier: PersonIdentity | str | None = None
) -> Iterator[SourceRecord]:
    """Read a FHIR file or a folder of them; in a folder, bulk files go in dependency order.

    `person_identifier` is the identifier system that decides who a Patient is."""
    refs = References(person_identifier)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    files = [f for f in files if f.name.endswith((".json", ".ndjson", ".json.gz", ".ndjson.gz"))]
    files.sort(key=lambda f: (_file_rank(f), f.name))
    for file in files:
        reader = read_ndjson if ".ndjson" in file.name else read_json
        yield from reader(file, refs)


def _file_rank(path: Path) -> int:
    """Where a file goes in the reading order: a bulk NDJSON file by the type of its first
    resource (servers name them `Patient.ndjson`, `1.Patient.ndjson`, `patient-0001.ndjson`
    or by an opaque id), so that patients come before what refers to them; Bundles first,
    by the earliest type among their first entries: Synthea's `hospitalInformation*.json`
    and `practitionerInformation*.json` before the patient Bundles that refer to them
    (`Aaron_Smith_….json`, sorted first by name)."""
    if ".ndjson" not in path.name:
        return _bundle_rank(path)
    try:
        with _open(path) as handle:
            first = next((line for line in bounded_lines(handle) if line and line.strip()), b"")
        match = _RESOURCE_TYPE.search(first[:_PEEK])
    except (OSError, EOFError, gzip.BadGzipFile):
        return -1
    kind = match.group(1).decode() if match else None
    return SUPPORTED.index(kind) if kind in SUPPORTED else len(SUPPORTED)


def _bundle_rank(path: Path) -> int:
    """A JSON file's place before every NDJSON file: by the earliest SUPPORTED type among
    the resources its first bytes name (the Bundle itself aside)."""
    try:
        with _open(path) as handle:
            first = handle.read(_BUNDLE_PEEK)
    except (OSError, EOFError, gzip.BadGzipFile):
        return -1
    kinds = {m.group(1).decode() for m in _RESOURCE_TYPE.finditer(first)} - {"Bundle"}
    ranks = [SUPPORTED.index(k) for k in kinds if k in SUPPORTED]
    return min(ranks, default=len(SUPPORTED)) - len(SUPPORTED) - 1


#: The resourceType of the first line of an NDJSON file, read from its first bytes.
_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
_PEEK = 1 << 16
#: How much of a JSON file names the types of its first entries (a fraction of a Synthea
#: patient Bundle, read once per file).
_BUNDLE_PEEK = 1 << 13
