"""HL7 v2 messages: ADT (A01, A02, A03, A04, A08, A40) and ORU^R01, from files or MLLP.

A message is the unit: it passes the segment and field rules and yields its
records, or it is rejected whole with the rule it broke. Files may hold messages
one after another (segments ended by CR, LF or CRLF) or MLLP-framed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import hl7

from flip.data.sources.records import (
    Rejected,
    SourceEvent,
    SourceMerge,
    SourcePerson,
    SourceRecord,
    SourceVisit,
)

START, END = b"\x0b", b"\x1c"
ADT_EVENTS = {"A01", "A02", "A03", "A04", "A08", "A40"}
#: HL7 table 0396 coding systems -> code system URIs.
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "UCUM": "http://unitsofmeasure.org",
}
PATIENT_CLASSES = {"I": "IMP", "O": "AMB", "E": "EMER"}
SEXES = {"M": "male", "F": "female", "O": "other", "U": "unknown"}


class MessageError(ValueError):
    """A message breaks an HL7 v2 rule; `rule` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def split_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, message) with segments joined by CR, MLLP framing removed."""
    if START in data:
        for match in re.finditer(rb"\x0b(.*?)\x1c\r?", data, flags=re.S):
            yield match.start(), _normalise(match.group(1))
        return
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=[\r\n]))MSH\|", data)]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        yield start, _normalise(data[start:end])


def _normalise(message: bytes) -> bytes:
    lines = re.split(rb"\r\n|\r|\n", message.strip(b"\r\n \t"))
    return b"\r".join(line for line in lines if line.strip())


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Message:
    """Field access on a parsed message that answers "" for what is absent."""

    def __init__(self, raw: bytes) -> None:
        text = _text(raw)
        if not text.startswith("MSH"):
            raise MessageError("hl7.msh_missing", "the message does not start with an MSH segment")
        try:
            self.msg = hl7.parse(text)
        except (hl7.ParseException, IndexError, ValueError) as exc:
            raise MessageError("hl7.unparseable", f"cannot parse: {exc}") from None
        self.names = [str(segment[0]) for segment in self.msg]

    def get(self, segment: Any, field: int, component: int = 1, repeat: int = 1) -> str:
        try:
            value = segment[field]
            if value is None or str(value) == "":
                return ""
            rep = (
                value[repeat - 1]
                if isinstance(value, hl7.Field) and len(value) >= repeat
                else value
            )
            if isinstance(rep, hl7.Repetition):
                part = rep[component - 1] if len(rep) >= component else ""
                return str(part)
            return str(rep) if component == 1 else ""
        except (IndexError, TypeError):
            return ""

    def segments(self, name: str) -> list:
        return [s for s in self.msg if str(s[0]) == name]

    def first(self, name: str):
        found = self.segments(name)
        return found[0] if found else None


def _date(value: str, what: str) -> date | None:
    if not value:
        return None
    digits = value[:8]
    try:
        return date(int(digits[:4]), int(digits[4:6] or 1), int(digits[6:8] or 1))
    except ValueError:
        raise MessageError("hl7.date.invalid", f"{what} {value!r} is not a date") from None


def _check_order(names: list[str], kind: str) -> None:
    if "PID" not in names:
        raise MessageError("hl7.pid.missing", f"{kind} message has no PID segment")
    pid = names.index("PID")
    for name in ("PV1", "DG1", "OBR", "OBX", "MRG"):
        if name in names and names.index(name) < pid:
            raise MessageError("hl7.segment_order", f"{name} comes before PID")
    seen_obr = False
    for name in names:
        seen_obr = seen_obr or name == "OBR"
        if name == "OBX" and kind == "ORU" and not seen_obr:
            raise MessageError("hl7.segment_order", "OBX comes before any OBR")


def _system(code: str) -> str:
    return CODING_SYSTEMS.get(code.upper(), f"urn:hl7v2:{code}" if code else "")


def parse_message(raw: bytes, location: str) -> list[SourceRecord]:
    """The records of one message, or one Rejected naming the rule it broke."""
    try:
        return _records(_Message(raw), raw, location)
    except MessageError as exc:
        return [Rejected(None, location, exc.rule, str(exc), raw)]


def _records(m: _Message, raw: bytes, location: str) -> list[SourceRecord]:
    msh = m.first("MSH")
    kind, event = m.get(msh, 9, 1), m.get(msh, 9, 2)
    control = m.get(msh, 10)
    if (kind, event) != ("ORU", "R01") and not (kind == "ADT" and event in ADT_EVENTS):
        raise MessageError("hl7.unsupported_type", f"message type {kind}^{event} is not read")
    _check_order(m.names, kind)
    sent = _date(m.get(msh, 7), "MSH-7")
    pid = m.first("PID")
    person_key = _person_key(m, pid)
    person = SourcePerson(
        key=person_key,
        source_value=m.get(pid, 3),
        birth_date=_date(m.get(pid, 7), "PID-7 birth date"),
        gender=SEXES.get(m.get(pid, 8).upper()),
        location=location,
        raw=raw,
        death_date=_date(m.get(pid, 29), "PID-29 death date"),
    )
    if kind == "ADT" and event == "A40":
        return _merge(m, person_key, control, location, raw)
    records: list[SourceRecord] = [person]
    visit_key = None
    pv1 = m.first("PV1")
    if pv1 is not None:
        visit_key = f"visit/{m.get(pv1, 19) or control}"
        start = _date(m.get(pv1, 44), "PV1-44 admit time") or sent
        end = _date(m.get(pv1, 45), "PV1-45 discharge time")
        klass = PATIENT_CLASSES.get(m.get(pv1, 2).upper(), m.get(pv1, 2))
        records.append(
            SourceVisit(visit_key, person_key, start, end or start, klass, location, raw)
        )
    for dg1 in m.segments("DG1"):
        code = m.get(dg1, 3)
        if not code:
            raise MessageError("hl7.dg1.code_missing", "DG1-3 has no diagnosis code")
        records.append(
            SourceEvent(
                key=f"{visit_key or control}/DG1/{m.get(dg1, 1) or code}",
                person_key=person_key,
                system=_system(m.get(dg1, 3, 3)),
                code=code,
                start=_date(m.get(dg1, 5), "DG1-5 diagnosis time") or sent,
                default_table="condition_occurrence",
                location=location,
                raw=raw,
                visit_key=visit_key,
            )
        )
    if kind == "ORU":
        records.extend(_results(m, person_key, control, sent, location, raw, visit_key))
    return records


def _person_key(m: _Message, pid) -> str:
    identifier = m.get(pid, 3)
    if not identifier:
        raise MessageError("hl7.pid.identifier_missing", "PID-3 has no patient identifier")
    authority = m.get(pid, 3, 4)
    return f"patient/{authority}/{identifier}" if authority else f"patient/{identifier}"


def _merge(m: _Message, person_key: str, control: str, location: str, raw: bytes):
    mrg = m.first("MRG")
    old = m.get(mrg, 1) if mrg is not None else ""
    if not old:
        raise MessageError("hl7.mrg.missing", "A40 has no MRG-1 prior patient identifier")
    authority = m.get(mrg, 1, 4)
    old_key = f"patient/{authority}/{old}" if authority else f"patient/{old}"
    return [SourceMerge(f"merge/{control}", person_key, old_key, location, raw)]


def _results(m: _Message, person_key, control, sent, location, raw, visit_key):
    order, order_date = control, sent
    index = 0
    out: list[SourceRecord] = []
    for segment in m.msg:
        name = str(segment[0])
        if name == "OBR":
            order = m.get(segment, 3) or m.get(segment, 2) or control
            order_date = _date(m.get(segment, 7), "OBR-7 observation time") or sent
            continue
        if name != "OBX":
            continue
        index += 1
        code = m.get(segment, 3)
        if not code:
            raise MessageError("hl7.obx.code_missing", f"OBX {index} has no OBX-3 code")
        value_type, value = m.get(segment, 2).upper(), m.get(segment, 5)
        fields: dict = {}
        table = "observation"
        if value_type in ("NM", "SN"):
            try:
                fields = {
                    "value": float(value) if value else None,
                    "unit": m.get(segment, 6) or None,
                }
            except ValueError:
                raise MessageError(
                    "hl7.obx.value_not_numeric", f"OBX {index} is NM but its value is {value!r}"
                ) from None
            table = "measurement"
        elif value_type in ("CE", "CWE", "CNE"):
            fields = {"value_code": (_system(m.get(segment, 5, 3)), value)}
        elif value:
            fields = {"text": value}
        out.append(
            SourceEvent(
                key=f"result/{order}/{code}/{m.get(segment, 4) or m.get(segment, 1) or index}",
                person_key=person_key,
                system=_system(m.get(segment, 3, 3)),
                code=code,
                start=_date(m.get(segment, 14), "OBX-14 observation time") or order_date,
                default_table=table,
                location=location,
                raw=raw,
                visit_key=visit_key,
                **fields,
            )
        )
    return out


def read_file(path: Path) -> Iterator[SourceRecord]:
    """Yield the records of every message in a file."""
    data = path.read_bytes()
    for offset, message in split_messages(data):
        yield from parse_message(message, f"{path}@{offset}")


def read_path(path: Path) -> Iterator[SourceRecord]:
    """Read an HL7 v2 file or every file in a folder, in name order."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        yield from read_file(file)
