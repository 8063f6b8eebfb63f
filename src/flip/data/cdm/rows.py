"""Turn neutral source records into OMOP CDM rows with stable ids."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from flip.data.cdm.schema import DOMAIN_TABLES, EVENT_COLUMNS, metadata
from flip.data.sources.records import (
    GENDERS,
    IDENTIFIED,
    BlockEvent,
    SourceEvent,
    SourcePerson,
    SourceVisit,
)
from flip.data.terminology.units import harmonise
from flip.data.terminology.visits import visit_concept
from flip.data.terminology.vocabulary import Mapping, Vocabulary

EHR = 32817

#: A value's comparator -> OMOP operator_concept_id (Meas Value Operator vocabulary).
OPERATORS = {"<": 4171756, "<=": 4171754, "=": 4172703, ">=": 4171755, ">": 4172704}


def day(when: date | None) -> date | None:
    """The calendar day of a date or datetime."""
    return when.date() if isinstance(when, datetime) else when


def moment(when: date | None) -> datetime | None:
    """The datetime of a value that carries a time of day; None for a bare date."""
    return when if isinstance(when, datetime) else None


def stable_id(*parts: str) -> int:
    """A 52-bit id from a record's identity, the same on every run and every machine."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:7], "big") >> 4


def stable_ids(keys: Iterable[str], *parts: str) -> list[int]:
    """`stable_id(*parts, key)` for each key, computed in one pass."""
    prefix = "".join(f"{part}\x1f" for part in parts)
    sha256, to_int = hashlib.sha256, int.from_bytes
    return [to_int(sha256(f"{prefix}{key}".encode()).digest()[:7], "big") >> 4 for key in keys]


def person_id(system: str, key: str) -> int:
    """The person_id of a source person key (system-independent for an identified person)."""
    if key.startswith(IDENTIFIED):
        return stable_id("person", key)
    return stable_id(system, "person", key)


def actor_id(system: str, table: str, key: str | None) -> int | None:
    """The provider, care_site or location id of a source key (None when there is none)."""
    return stable_id(system, table, key) if key else None


def visit_id(system: str, key: str | None) -> int | None:
    """The visit_occurrence_id of a source encounter key (None when there is none)."""
    return stable_id(system, "visit", key) if key else None


@dataclass(slots=True)
class CdmRow:
    """One row for one CDM table."""

    table: str
    id: int
    values: dict[str, object]


def person_row(system: str, p: SourcePerson) -> CdmRow:
    """The person row of a source patient."""
    pid = person_id(system, p.key)
    born = p.birth_date
    assert born is not None
    return CdmRow(
        "person",
        pid,
        {
            "person_id": pid,
            "gender_concept_id": GENDERS.get(p.gender or "", 0),
            "year_of_birth": born.year,
            "month_of_birth": born.month if p.birth_parts > 1 else None,
            "day_of_birth": born.day if p.birth_parts > 2 else None,
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "birth_datetime": moment(born) if p.birth_parts > 2 else None,
            "person_source_value": p.source_value[:50],
            "gender_source_value": (p.gender or "")[:50] or None,
        },
    )


def visit_row(system: str, v: SourceVisit, person_id: int) -> CdmRow:
    """The visit_occurrence row of a source encounter."""
    vid = visit_id(system, v.key)
    start = v.start
    assert start is not None
    return CdmRow(
        "visit_occurrence",
        vid,
        {
            "visit_occurrence_id": vid,
            "person_id": person_id,
            "visit_concept_id": visit_concept(v.source_value),
            "visit_start_date": day(start),
            "visit_start_datetime": moment(start),
            "visit_end_date": day(v.end or start),
            "visit_end_datetime": moment(v.end),
            "visit_type_concept_id": EHR,
            "visit_source_value": v.source_value[:50] or None,
            "provider_id": actor_id(system, "provider", v.provider_key),
            "care_site_id": actor_id(system, "care_site", v.care_site_key),
        },
    )


def death_row(system: str, p: SourcePerson) -> CdmRow:
    """The death row of a patient who died."""
    pid = person_id(system, p.key)
    return CdmRow(
        "death",
        pid,
        {
            "person_id": pid,
            "death_date": day(p.death_date),
            "death_datetime": moment(p.death_date),
            "death_type_concept_id": EHR,
        },
    )


#: Per event table: its id, concept, date, type concept, source value and source concept columns.
_NAMES = {
    table: (
        f"{table}_id",
        c.concept,
        c.date,
        f"{c.prefix}_type_concept_id",
        f"{c.prefix}_source_value",
        f"{c.prefix}_source_concept_id",
    )
    for table, c in EVENT_COLUMNS.items()
}

#: Per event table, the column that keeps the time of day of its date (where it has one).
_MOMENTS = {
    table: c.datetime
    for table, c in EVENT_COLUMNS.items()
    if c.datetime in metadata.tables[table].c
}


#: Event tables that name the provider of a fact.
_PROVIDED = {table for table in EVENT_COLUMNS if "provider_id" in metadata.tables[table].c}


def number_text(value: float | None, operator: str | None = None) -> str | None:
    """A value as the source sent it, for value_source_value ("5.9", "120", "<0.5")."""
    if value is None:
        return None
    text = repr(float(value))
    text = text[:-2] if text.endswith(".0") else text
    return f"{operator or ''}{text}"[:50]


def _specific(table: str, e: SourceEvent, vocab: Vocabulary, concept_id: int) -> dict[str, object]:
    """The columns only some event tables have."""
    if table in ("measurement", "observation"):
        unit = harmonise(concept_id, e.unit)
        if e.value is None and unit.converted:  # no value converted: the unit as sent
            unit = harmonise(0, e.unit)
        out: dict[str, object] = {
            "value_as_number": None if e.value is None else unit.apply(e.value),
            "unit_concept_id": vocab.unit(unit.code or e.unit),
            "unit_source_value": (e.unit_sent or e.unit or "")[:50] or None,
            "value_source_value": e.value_sent[:50]
            if e.value_sent
            else number_text(e.value, e.operator),
        }
        if table == "measurement" and e.operator:
            out["operator_concept_id"] = OPERATORS.get(e.operator, 0)
        if e.value_code is not None:
            out["value_as_concept_id"] = vocab.map(*e.value_code).concept_id
            out["value_source_value"] = e.value_code[1][:50]
        if table == "observation" and e.text:
            out["value_as_string"] = e.text[:60]
        if table == "measurement" and e.text and e.value_code is None:
            out["value_source_value"] = e.text[:50]
        return out
    if table == "condition_occurrence":
        return {"condition_end_date": day(e.end), "condition_end_datetime": moment(e.end)}
    if table == "drug_exposure":
        return {
            "drug_exposure_end_date": day(e.end or e.start),
            "drug_exposure_end_datetime": moment(e.end),
            "quantity": e.quantity,
            "route_source_value": (e.detail or {}).get("route"),
        }
    if table == "procedure_occurrence":
        return {"procedure_end_date": day(e.end), "procedure_end_datetime": moment(e.end)}
    if table == "device_exposure":
        return {
            "device_exposure_end_date": day(e.end),
            "device_exposure_end_datetime": moment(e.end),
        }
    return {}


def note_row(system: str, e: SourceEvent, person_id: int, vocab: Vocabulary) -> CdmRow:
    """A note: its text stays at the site, in the note table."""
    row_id = stable_id(system, "note", e.key)
    return CdmRow(
        "note",
        row_id,
        {
            "note_id": row_id,
            "person_id": person_id,
            "note_date": day(e.start),
            "note_datetime": moment(e.start),
            "note_type_concept_id": EHR,
            "note_class_concept_id": vocab.map(e.system, e.code).concept_id,
            "note_title": ((e.detail or {}).get("title") or "")[:250] or None,
            "note_text": e.text or "",
            "encoding_concept_id": 0,
            "language_concept_id": 0,
            "visit_occurrence_id": visit_id(system, e.visit_key),
            "provider_id": actor_id(system, "provider", e.provider_key),
            "note_source_value": e.code[:50],
        },
    )


def image_row(system: str, e: SourceEvent, person_id: int, vocab: Vocabulary) -> CdmRow:
    """An imaging study: metadata and a reference; the pixels stay where they are."""
    row_id = stable_id(system, "image", e.key)
    detail = e.detail or {}
    return CdmRow(
        "image_occurrence",
        row_id,
        {
            "image_occurrence_id": row_id,
            "person_id": person_id,
            "visit_occurrence_id": visit_id(system, e.visit_key),
            "image_occurrence_date": day(e.start),
            "image_study_uid": detail["study_uid"],
            "image_series_uid": detail.get("series_uid"),
            "modality_concept_id": vocab.map(e.system, e.code).concept_id,
            "wadors_uri": detail.get("wadors_uri"),
            "local_path": detail.get("local_path"),
        },
    )


def instance_row(system: str, e: SourceEvent, person_id: int) -> CdmRow:
    """A further DICOM instance of a series, linked to the series' image_occurrence row."""
    row_id = stable_id(system, "image_instance", e.key)
    detail = e.detail or {}
    return CdmRow(
        "image_instance",
        row_id,
        {
            "image_instance_id": row_id,
            "person_id": person_id,
            "image_occurrence_id": stable_id(system, "image", f"series/{detail['series_uid']}"),
            "sop_instance_uid": detail["sop_instance_uid"],
            "sop_class_uid": detail.get("sop_class_uid") or None,
            "instance_number": _integer(detail.get("instance_number", "")),
            "wadors_uri": detail.get("wadors_uri"),
            "local_path": detail.get("local_path"),
        },
    )


def _integer(text: str) -> int | None:
    """A whole number that fits an INTEGER column, else None."""
    try:
        number = int(text)
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None


def _through_alternate(primary: Mapping, alternate: Mapping) -> Mapping:
    """The alternate code's standard concept when it has one, keeping the primary code's
    source concept (the code the source sent first); else the primary mapping."""
    if not alternate.concept_id:
        return primary
    source = primary.source_concept_id or alternate.source_concept_id
    return Mapping(alternate.concept_id, alternate.domain_id, source, "via the alternate code")


def event_row(
    system: str, e: SourceEvent, person_id: int, vocab: Vocabulary
) -> tuple[CdmRow, bool]:
    """The row of an event in the table of its concept's domain, and whether its code mapped."""
    if e.default_table == "note":
        return note_row(system, e, person_id, vocab), True
    if e.default_table == "image_occurrence":
        row = image_row(system, e, person_id, vocab)
        return row, row.values["modality_concept_id"] != 0
    if e.default_table == "image_instance":
        return instance_row(system, e, person_id), True
    mapping = vocab.map(e.system, e.code)
    for other in (e.alternate, *e.alternates):
        if mapping.concept_id:
            break
        if other:
            mapping = _through_alternate(mapping, vocab.map(*other))
    table = (
        e.default_table
        if e.fixed_table
        else DOMAIN_TABLES.get(mapping.domain_id or "", e.default_table)
    )
    id_, concept, when, type_, source_value, source_concept = _NAMES[table]
    row_id = stable_id(system, table, e.key)
    values: dict[str, object] = {
        id_: row_id,
        "person_id": person_id,
        concept: mapping.concept_id,
        when: day(e.start),
        type_: EHR,
        source_value: e.code[:50],
        source_concept: mapping.source_concept_id,
        "visit_occurrence_id": visit_id(system, e.visit_key),
    }
    if table in _MOMENTS:
        values[_MOMENTS[table]] = moment(e.start)
    if e.provider_key and table in _PROVIDED:
        values["provider_id"] = actor_id(system, "provider", e.provider_key)
    values.update(_specific(table, e, vocab, mapping.concept_id))
    return CdmRow(table, row_id, values), mapping.concept_id != 0


def block_columns(
    system: str,
    table: str,
    events: list[BlockEvent],
    mappings: list[Mapping],
    person_ids: list[int],
    vocab: Vocabulary,
) -> dict[str, list[object]]:
    """The columns of coded events that all land in `table`: event_row for a whole block,
    each distinct unit and value worked out once."""
    id_, concept, when, type_, source_value, source_concept = _NAMES[table]
    n = len(events)
    starts = [e.start for e in events]
    columns: dict[str, list[object]] = {
        id_: stable_ids((e.key for e in events), system, table),
        "person_id": person_ids,
        concept: [m.concept_id for m in mappings],
        when: [s.date() if isinstance(s, datetime) else s for s in starts],
        type_: [EHR] * n,
        source_value: [e.code[:50] for e in events],
        source_concept: [m.source_concept_id for m in mappings],
        "visit_occurrence_id": [None] * n,
    }
    if table in _MOMENTS and any(isinstance(s, datetime) for s in starts):
        columns[_MOMENTS[table]] = [s if isinstance(s, datetime) else None for s in starts]
    if table in ("measurement", "observation"):
        keys = [(m.concept_id, e.unit) for e, m in zip(events, mappings, strict=True)]
        stored = {key: harmonise(*key) for key in set(keys)}
        unit_ids = {key: vocab.unit(h.code or key[1]) for key, h in stored.items()}
        converting = {key: h for key, h in stored.items() if h.converted}
        values = [e.value for e in events]
        if converting:
            converted = [
                v if v is None or key not in converting else converting[key].apply(v)
                for v, key in zip(values, keys, strict=True)
            ]
        else:
            converted = values
        columns["value_as_number"] = converted
        unit_concepts = [unit_ids[key] for key in keys]
        if converting:  # a value not converted keeps the unit concept of the unit as sent
            for i, (v, key) in enumerate(zip(values, keys, strict=True)):
                if v is None and key in converting:
                    unit_concepts[i] = vocab.unit(harmonise(0, key[1]).code or key[1])
        columns["unit_concept_id"] = unit_concepts
        columns["unit_source_value"] = [(e.unit_sent or e.unit or "")[:50] or None for e in events]
        # each distinct non-zero value written once (0.0 and -0.0 are one key, two texts)
        texts = {v: number_text(v) for v in set(values) if v}
        columns["value_source_value"] = [
            e.value_sent[:50] if e.value_sent else (texts.get(e.value) or number_text(e.value))
            for e in events
        ]
        if table == "observation":
            columns["value_as_string"] = [e.text[:60] if e.text else None for e in events]
    elif table == "drug_exposure":
        columns["drug_exposure_end_date"] = columns[when]
    return columns
