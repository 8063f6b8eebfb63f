"""HL7 v2 messages from files or MLLP: ADT, ORU^R01 results and MDM documents.

What is atomic (docs/site-setup.md says the same):
- the message: it must parse and start with MSH; a message type FLIP does not read is
  skipped whole, counted under `hl7.message_type.unhandled.TYPE^EVENT`;
- the patient group (a PID and what follows it up to the next PID): a PID without an
  identifier quarantines its group;
- the segment: a DG1, PR1 or AL1 without a code (hl7v2_history), an OBX whose value
  does not parse (or whose result the plausibility checks reject) is quarantined alone;
  the message's other records load;
  a site's own Z-segment is skipped, counted under `hl7.segment.unhandled.NAME`, a
  standard segment FLIP does not read (NTE, ORC, SPM, NK1, IN1…) under
  `hl7.segment.not_read.NAME`; an OBX
  whose status says it is no result (OBX-11 D, W, X, I, O, N) or that has no OBX-5 is
  skipped by its rule; an A11 withdraws the visit its PV1-19 names.
Identifiers are qualified by who assigned them (an order number by its namespace, a visit
number by its assigning authority or facility, else MSH-4), a result also by its patient.
A PID field left empty changes nothing the person had (`""` deletes it).
An optional field that does not parse (a death date, an observation time) is nulled with a
warning counted per rule `hl7.FIELD.invalid`; HL7's explicit null `""` is no value.
Files may hold messages one after another (segments ended by CR, LF or CRLF) or MLLP-framed.
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import hl7

from flip.data.sources import hl7v2_history, textfile
from flip.data.sources.hl7v2_values import (
    NULL,
    Number,
    birth,
    numeric,
    structured,
    timestamp,
    truncated,
)
from flip.data.sources.identity import TOO_LONG, PersonIdentity
from flip.data.sources.records import (
    Rejected,
    Skipped,
    SourceEvent,
    SourceMerge,
    SourcePerson,
    SourceRecord,
    SourceVisit,
)
from flip.data.terminology.vocabulary import hl7_system

START, END = b"\x0b", b"\x1c"
FEED = "hl7v2"  # the default source system of every HL7 v2 file and the MLLP listener
BOM = b"\xef\xbb\xbf"
#: Batch envelope segments: they wrap messages and carry no record.
ENVELOPE = {b"FHS", b"BHS", b"BTS", b"FTS"}
#: An MLLP frame (its END may be missing at the end of the data), or the bytes between frames.
_FRAME = re.compile(rb"\x0b([^\x0b]*?)(?:\x1c\r?|(?=\x0b)|\Z)|([^\x0b]+)", re.S)
#: A message's first segment: MSH at the start of a line, then its field separator.
_MSH = re.compile(rb"(?:^|(?<=[\r\n]))[ \t]*MSH(?=[^\w\r\n])")
#: The message types FLIP reads, by MSH-9 message code -> trigger events.
HANDLED = {
    "ADT": {
        *("A01", "A02", "A03", "A04", "A08", "A11", "A13", "A18", "A24", "A34", "A36", "A37"),
        "A40",
    },
    "ORU": {"R01"},
    "MDM": {"T02", "T04", "T06", "T08", "T10"},
}
UNHANDLED = "hl7.message_type.unhandled"
#: The rule, followed by the segment's name, of a Z-segment inside a message FLIP reads.
Z_SEGMENT = "hl7.segment.unhandled"
#: The rule, followed by the segment's name, of a standard segment FLIP does not read
#: (NTE, ORC, SPM, NK1, IN1, PD1, a second PV1…): each is counted as skipped, never lost.
NOT_READ = "hl7.segment.not_read"
#: The warning rule of an NM or SN value read with a decimal comma (`13,5` is 13.5).
DECIMAL_COMMA = "hl7.OBX-5.decimal_comma"
#: The segments before the first PID that FLIP reads (the message header and event).
HEADER_READ = {"MSH", "EVN"}
#: ADT events that merge patients, PID/MRG pair by pair: A40, and v2.3's A18, A34 and A36
#: (kept for backward compatibility; older feeds still send them).
MERGES = {"A18", "A34", "A36", "A40"}
#: ADT events that link two patients' identifiers as one person (A24: the second PID's
#: into the first's) or undo that link (A37), each carrying the two PID segments.
LINKS = {"A24": "link", "A37": "unlink"}
PATIENT_CLASSES = {"I": "IMP", "O": "AMB", "E": "EMER"}
#: The rule of an ADT^A11 (cancel admit/visit): the visit its PV1-19 names is withdrawn.
CANCELLED = "hl7.visit.cancelled"
#: The rule of an A11 whose PV1 names no visit number: nothing to cancel is known.
CANCEL_UNNAMED = "hl7.visit.cancel_unnamed"
#: Events that end a visit: without PV1-19 they end the patient's open visit they fit.
DISCHARGES = {"A03"}
#: Events that cancel a discharge (the visit goes on): with PV1-19 the visit is open again;
#: without, they drop the kept discharge of the patient they fit (SourceVisit.cancels).
DISCHARGE_CANCELS = {"A13"}
SEXES = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
#: OBX-11 result statuses that are not a fact: deleted, wrong, cannot be obtained, pending,
#: order detail and not asked (HL7 table 0085).
NOT_A_FACT = {
    "D": "deleted",
    "W": "posted in error",
    "X": "could not be obtained",
    "I": "pending: no result yet",
    "O": "order detail only: no result",
    "N": "not asked",
}
#: OBX-11 statuses that withdraw a result an earlier message sent (its rows are removed).
WITHDRAWING = {"D", "W"}
TEXT_TYPES = {"TX", "FT", "ST"}
CODED_TYPES = {"CE", "CWE", "CNE", "CF"}
#: OBX-2 types whose value is not clinical content FLIP stores (documents, pointers).
OPAQUE_TYPES = {"ED", "RP"}
DOCUMENT_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0270"


class MessageError(ValueError):
    """A message breaks an HL7 v2 rule; `rule` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def split_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, message) with segments joined by CR, MLLP framing removed.

    A UTF-8 byte-order mark, blank lines and batch envelopes (FHS, BHS, BTS, FTS) are
    dropped; anything else outside a message (a frame never closed, text before the first
    MSH) is yielded as it is, so that it is quarantined rather than lost.
    """
    offset = len(BOM) if data.startswith(BOM) else 0
    if START not in data:
        yield from _unframed(data[offset:], offset)
        return
    for match in _FRAME.finditer(data, offset):
        if match.group(1) is not None:
            yield match.start(), _normalise(match.group(1))
        else:
            yield from _unframed(match.group(2), match.start())


def _unframed(data: bytes, base: int) -> Iterator[tuple[int, bytes]]:
    """The messages of bytes without MLLP framing, each starting at a line `MSH` + separator."""
    starts = [m.start() for m in _MSH.finditer(data)]
    bounds = [0, *starts, len(data)] if not starts or starts[0] else [*starts, len(data)]
    for start, end in itertools.pairwise(bounds):
        chunk = _normalise(data[start:end])
        if chunk and not all(line[:3] in ENVELOPE for line in chunk.split(b"\r")):
            yield base + start, chunk


def _normalise(message: bytes) -> bytes:
    lines = re.split(rb"\r\n|\r|\n", message.strip(b"\r\n \t"))
    return b"\r".join(line for line in lines if line.strip())


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Message:
    """Field access on a parsed message that answers "" for what is absent or null (`""`)."""

    def __init__(self, raw: bytes) -> None:
        text = _text(raw)
        if not text.startswith("MSH"):
            raise MessageError("hl7.msh_missing", "the message does not start with an MSH segment")
        try:
            self.msg = hl7.parse(text)
        except (hl7.ParseException, IndexError, ValueError) as exc:
            raise MessageError("hl7.unparseable", f"cannot parse: {exc}") from None
        self.escape = self.msg.esc

    def get(self, segment: Any, field: int, component: int = 1, repeat: int = 1) -> str:
        try:
            value = segment[field]
            if value is None or str(value) in ("", NULL):
                return ""
            rep = (
                value[repeat - 1]
                if isinstance(value, hl7.Field) and len(value) >= repeat
                else value
            )
            if isinstance(rep, hl7.Repetition):
                part = str(rep[component - 1]) if len(rep) >= component else ""
            else:
                part = str(rep) if component == 1 else ""
            if part == NULL:
                return ""
            return self.msg.unescape(part) if self.escape in part else part
        except (IndexError, TypeError):
            return ""

    def blank(self, segment: Any, field: int) -> bool:
        """Whether a field is absent or empty: in an update, "no change" (`""` deletes)."""
        try:
            value = segment[field]
        except IndexError:
            return True
        return value is None or not str(value).strip()

    def repeats(self, segment: Any, field: int) -> int:
        """How many repetitions a field has (1 for a plain or absent field)."""
        try:
            value = segment[field]
        except IndexError:
            return 1
        return len(value) if isinstance(value, hl7.Field) else 1

    def lines(self, segment: Any, field: int) -> list[str]:
        """Every repetition of a text field, unescaped, one line each (FT line breaks kept)."""
        try:
            value = segment[field]
        except IndexError:
            return []
        reps = value if isinstance(value, hl7.Field) else [value]
        out = []
        for rep in reps:
            text = str(rep)
            if text and text != NULL:
                out.append(self.msg.unescape(text).replace("\r", "\n"))
        return out


def parse_message(
    raw: bytes, location: str, identity: PersonIdentity | None = None
) -> list[SourceRecord]:
    """The records of one message; a message that cannot be read is one Rejected naming
    the rule it broke, a message type FLIP does not read one Skipped. With the site's
    person `identity`, a patient whose PID-3 carries it is keyed by it (see identity)."""
    try:
        return _records(_Message(raw), raw, location, identity)
    except MessageError as exc:
        return [Rejected(None, location, exc.rule, str(exc), raw)]


class _Reader:
    """The records of one parsed message, built segment by segment."""

    def __init__(
        self, m: _Message, raw: bytes, location: str, identity: PersonIdentity | None
    ) -> None:
        self.m, self.raw, self.location, self.identity = m, raw, location, identity
        msh = m.msg.segment("MSH")
        self.kind, self.event = m.get(msh, 9, 1).upper(), m.get(msh, 9, 2).upper()
        if not self.event:  # v2.1 and v2.2 name the trigger event in EVN-1 alone
            evn = next((s for s in m.msg if str(s[0]) == "EVN"), None)
            self.event = m.get(evn, 1).upper() if evn is not None else ""
        self.control = m.get(msh, 10)
        #: The sending facility (MSH-4), which qualifies identifiers sent without their own
        #: namespace or assigning authority.
        self.facility = m.get(msh, 4) or m.get(msh, 4, 2)
        self.warnings: list[str] = []
        self.sent = self.when(m.get(msh, 7), "MSH-7")
        #: The records' version: MSH-7, so an older message read again than the one whose
        #: records are stored is superseded (batch.older), whichever is read first.
        self.version = f"|{self.sent.isoformat()}" if self.sent is not None else None
        self.header_warnings = tuple(self.warnings)
        self.out: list[SourceRecord] = []

    def when(self, value: str, field: str) -> date | None:
        """An optional time: None, with a warning, when it does not parse."""
        try:
            return timestamp(value)
        except ValueError:
            self.warnings.append(f"hl7.{field}.invalid")
            return None

    def reject(self, key: str | None, rule: str, message: str) -> None:
        self.out.append(Rejected(key, self.location, rule, message, self.raw, self.version))


def _records(
    m: _Message, raw: bytes, location: str, identity: PersonIdentity | None
) -> list[SourceRecord]:
    r = _Reader(m, raw, location, identity)
    if not r.kind:
        raise MessageError("hl7.msh_9.missing", "MSH-9 has no message type")
    if r.event not in HANDLED.get(r.kind, ()):
        name = f"{r.kind}^{r.event}" if r.event else r.kind
        rule = f"{UNHANDLED}.{name}"
        return [Skipped(f"message/{r.control}", location, rule, f"message type {name} is not read")]
    groups: list[list] = [[]]
    for segment in m.msg:
        if str(segment[0]) == "PID":
            groups.append([])
        groups[-1].append(segment)
    header, patients = groups[0], groups[1:]
    if not patients:
        raise MessageError("hl7.pid.missing", f"{r.kind} message has no PID segment")
    for i, segment in enumerate(header):
        name = str(segment[0])
        if name in ("PV1", "DG1", "OBR", "OBX", "TXA", "MRG"):
            r.reject(f"{r.control}/{name}/{i}", "hl7.segment_order", f"{name} comes before PID")
        elif name not in HEADER_READ:
            _skip_unread(r, name, f"{r.control}/{name}/{i}")
    if r.kind == "ADT" and r.event in MERGES:
        for number, group in enumerate(patients, start=1):
            _merge(r, group, number)
            _skip_z_segments(r, group, number)
        return r.out
    if r.kind == "ADT" and r.event in LINKS:
        _link(r, patients)
        for number, group in enumerate(patients, start=1):
            _skip_z_segments(r, group, number)
        return r.out
    for number, group in enumerate(patients, start=1):
        _patient(r, group, number)
    return r.out


def _identifier(m: _Message, segment: Any, field: int) -> tuple[str, str]:
    """(ID, assigning authority) of the repetition of a CX field typed MR (medical record
    number, CX.5), else of its first repetition that has an ID (a blank one is none): the
    same patient is one key whatever order a system sends PID-3's repetitions in, and an
    SSN sent first is not the record number."""
    valued = [
        repeat
        for repeat in range(1, m.repeats(segment, field) + 1)
        if m.get(segment, field, 1, repeat).strip()
    ]
    typed = [r for r in valued if m.get(segment, field, 5, r).strip().upper() == "MR"]
    for repeat in typed[:1] or valued[:1]:
        return m.get(segment, field, 1, repeat), m.get(segment, field, 4, repeat)
    return "", ""


def _identified(r: _Reader, segment: Any, field: int) -> str | None:
    """The value of the repetition of a CX field that carries the site's person identifier
    (by its assigning authority CX.4 and type CX.5), whichever repetition it is."""
    m, identity = r.m, r.identity
    if identity is None:
        return None
    for repeat in range(1, m.repeats(segment, field) + 1):
        value = m.get(segment, field, 1, repeat)
        authority = _components(m, segment, field, repeat, 4)
        kind = m.get(segment, field, 5, repeat)
        if value.strip() and identity.in_hl7(authority[0], authority[1], kind):
            return value
    return None


def _components(m: _Message, segment: Any, field: int, repeat: int, component: int) -> list[str]:
    """The subcomponents of one component of a field's repetition (HD: namespace, universal
    id, its type), "" for each one absent."""
    try:
        value = segment[field]
        rep = value[repeat - 1] if isinstance(value, hl7.Field) else value
        part = rep[component - 1] if isinstance(rep, hl7.Repetition) else None
    except (IndexError, TypeError):
        part = None
    if isinstance(part, hl7.Component):
        subs = [str(s) for s in part]
    else:
        subs = [str(part)] if part is not None else []
    subs = [m.msg.unescape(s) if m.escape in s else s for s in subs]
    return [("" if s == NULL else s) for s in subs] + ["", ""]


def _person_key(r: _Reader, segment: Any, field: int, what: str) -> tuple[str, str]:
    """(person key, the identifier it names): the site's person identifier when a
    repetition carries it, else the first identifier and its assigning authority."""
    chosen = _identified(r, segment, field)
    if chosen and r.identity is not None:
        key = r.identity.key(chosen)
        if key is not None:
            return key, chosen
        r.warnings.append(f"hl7.{TOO_LONG}")
    identifier, authority = _identifier(r.m, segment, field)
    if not identifier:
        raise MessageError(f"hl7.{what}.identifier_missing", f"{what.upper()}-{field} is empty")
    key = f"patient/{authority}/{identifier}" if authority else f"patient/{identifier}"
    return key, identifier


def _merge(r: _Reader, group: list, number: int) -> None:
    """One PID/MRG pair of a merge event (A40…): a merge, or a Rejected naming the pair."""
    key = f"merge/{r.control}" if number == 1 else f"merge/{r.control}/{number}"
    try:
        person_key = _person_key(r, group[0], 3, "pid")[0]
        mrg = next((s for s in group if str(s[0]) == "MRG"), None)
        if mrg is None or not _identifier(r.m, mrg, 1)[0]:
            message = f"{r.event} has no MRG-1 prior patient identifier"
            raise MessageError("hl7.mrg.missing", message)
        old_key = _person_key(r, mrg, 1, "mrg")[0]
    except MessageError as exc:
        r.reject(key, exc.rule, f"{exc} (patient {number} of the message)")
        return
    r.out.append(SourceMerge(key, person_key, old_key, r.location, r.raw))


def _link(r: _Reader, patients: list[list]) -> None:
    """An A24 (link the second PID's identifier into the first's person) or an A37 (undo
    it, the second patient as its PID says now), or a Rejected naming the message."""
    key = f"{LINKS[r.event]}/{r.control}"
    try:
        if len(patients) != 2:
            message = f"{r.event} carries {len(patients)} PID segments, not the two it links"
            raise MessageError("hl7.link.pid_missing", message)
        person_key = _person_key(r, patients[0][0], 3, "pid")[0]
        r.warnings = list(r.header_warnings)
        second, source_value = _person_key(r, patients[1][0], 3, "pid")
    except MessageError as exc:
        r.reject(key, exc.rule, str(exc))
        return
    restores = _person(r, patients[1][0], second, source_value) if r.event == "A37" else None
    r.out.append(SourceMerge(key, person_key, second, r.location, r.raw, restores))


def _birth(r: _Reader, value: str) -> tuple[date | None, int]:
    """PID-7 and how many of its parts it gave: a partial date (`1970`, `197005`) is a year
    (and month) of birth; a malformed one keeps what of it is valid (year and month), with
    a warning."""
    try:
        return birth(value)
    except ValueError:
        r.warnings.append("hl7.PID-7.truncated")
        return truncated(value)


def _patient(r: _Reader, group: list, number: int) -> None:
    m, pid = r.m, group[0]
    r.warnings = list(r.header_warnings)
    try:
        person_key, source_value = _person_key(r, pid, 3, "pid")
    except MessageError as exc:
        r.reject(f"{r.control}/PID/{number}", exc.rule, f"{exc} (patient {number} of the message)")
        return
    r.out.append(_person(r, pid, person_key, source_value))
    scope = r.control if number == 1 else f"{r.control}/{number}"
    context = _Context(person_key, scope, r.sent)
    for index, segment in enumerate(group[1:], start=1):
        name = str(segment[0])
        r.warnings = []
        if name == "PV1" and context.visit_key is None and r.event == "A11":
            _cancel(r, segment, context)
        elif name == "PV1" and context.visit_key is None:
            _visit(r, segment, context)
        elif name == "DG1":
            _diagnosis(r, segment, context, index)
        elif name in hl7v2_history.SEGMENTS:
            hl7v2_history.history(r, segment, context, index)
        elif name == "OBR":
            context.orders += 1
            fallback = scope if context.orders == 1 else f"{scope}/OBR{context.orders}"
            context.order = _order(r, segment) or fallback
            context.owner = "" if _namespaced(r, segment) else context.person_key
            context.order_time = r.when(m.get(segment, 7), "OBR-7") or r.sent
            context.order_warnings = tuple(r.warnings)
        elif name == "TXA":
            context.document = segment
        elif name == "OBX":
            context.results += 1
            if r.kind == "MDM":
                context.document_lines.append(segment)
            else:
                _result(r, segment, context)
        else:
            _skip_unread(r, name, f"{scope}/{name}/{index}")
    _flush_text(r, context)
    if r.kind == "MDM":
        _document(r, context)


def _qualified(r: _Reader, segment: Any, field: int, authorities: tuple[int, ...]) -> str:
    """An EI or CX identifier as a key part: `AUTHORITY/ID`, its authority the components
    `authorities` name (EI namespace and universal id; CX assigning authority and facility),
    else the sending facility; "" when it has no ID."""
    m = r.m
    identifier = m.get(segment, field)
    if not identifier:
        return ""
    parts = [m.get(segment, field, c) for c in authorities]
    authority = "^".join(parts).rstrip("^") or r.facility
    return f"{authority}/{identifier}" if authority else identifier


def _order(r: _Reader, obr: Any) -> str:
    """An OBR's order identity: its filler number (OBR-3), else its placer number (OBR-2),
    qualified by the namespace that assigned it (see _qualified)."""
    return _qualified(r, obr, 3, (2, 3, 4)) or _qualified(r, obr, 2, (2, 3, 4))


def _namespaced(r: _Reader, obr: Any) -> bool:
    """Whether the OBR's order number (filler, else placer) names its own namespace."""
    field = 3 if r.m.get(obr, 3) else 2
    return bool(r.m.get(obr, field)) and any(r.m.get(obr, field, c) for c in (2, 3, 4))


def _skip_unread(r: _Reader, name: str, key: str) -> None:
    """A segment FLIP does not read is counted as skipped under its name: a site's own
    Z-segment under `hl7.segment.unhandled.NAME`, a standard one (NTE, ORC, SPM, NK1,
    IN1…) under `hl7.segment.not_read.NAME`."""
    if name.startswith("Z"):
        rule = f"{Z_SEGMENT}.{name}"
        r.out.append(Skipped(key, r.location, rule, f"segment {name} is a local Z-segment"))
    else:
        rule = f"{NOT_READ}.{name}"
        r.out.append(Skipped(key, r.location, rule, f"segment {name} is not read"))


def _skip_z_segments(r: _Reader, group: list, number: int) -> None:
    """The segments of a merge or link event's patient group other than its PID and MRG,
    each skipped by its name."""
    for index, segment in enumerate(group[1:], start=1):
        name = str(segment[0])
        if name != "MRG" or r.event in LINKS:
            _skip_unread(r, name, f"{r.control}/{number}/{name}/{index}")


def _person(r: _Reader, pid: Any, person_key: str, source_value: str) -> SourcePerson:
    """The patient record a PID segment gives; what its empty fields would say is unsaid
    (HL7: an empty field changes nothing, `""` deletes)."""
    m = r.m
    born, parts = _birth(r, m.get(pid, 7))
    death = r.when(m.get(pid, 29), "PID-29")
    return SourcePerson(
        key=person_key,
        source_value=source_value,
        birth_date=born,
        gender=SEXES.get(m.get(pid, 8).upper()),
        location=r.location,
        raw=r.raw,
        death_date=death,
        warnings=tuple(r.warnings),
        birth_parts=parts,
        unsaid=frozenset(
            name for name, field in _DEMOGRAPHIC_FIELDS.items() if m.blank(pid, field)
        ),
        version=r.version,
    )


#: The PID fields of the demographics an update may leave unsaid (SourcePerson.unsaid).
_DEMOGRAPHIC_FIELDS = {"birth_date": 7, "gender": 8, "death_date": 29}


class _Context:
    """Where a patient group's segments stand: its person, visit, order and text so far."""

    def __init__(self, person_key: str, scope: str, sent: date | None) -> None:
        self.person_key, self.scope = person_key, scope
        self.visit_key: str | None = None
        self.order, self.order_time = scope, sent
        #: The patient part of a result's key: none when the order number carries its own
        #: namespace (unique across patients: a result filed under a patient merged away
        #: since keeps its key), else the patient key.
        self.owner = person_key
        self.orders = 0
        self.order_warnings: tuple[str, ...] = ()
        self.results = 0
        self.text: dict[str, SourceEvent] = {}
        self.document: Any = None
        self.document_lines: list = []


def _visit(r: _Reader, pv1: Any, c: _Context) -> None:
    """A PV1's visit, open until PV1-45 says when it ended; versioned by MSH-7 (an older
    message read again does not reopen a visit a later one ended). An A03 without PV1-19
    ends the patient's open visit it fits (SourceVisit.open_visit); an A13 (cancel discharge)
    opens its visit again, or without PV1-19 drops the patient's kept A03 it fits."""
    m = r.m
    number = _qualified(r, pv1, 19, (4, 6))
    c.visit_key = f"visit/{number or c.scope}"
    admitted = r.when(m.get(pv1, 44), "PV1-44")
    cancels = r.event in DISCHARGE_CANCELS
    end = None if cancels else r.when(m.get(pv1, 45), "PV1-45")
    klass = PATIENT_CLASSES.get(m.get(pv1, 2).upper(), m.get(pv1, 2))
    r.out.append(
        SourceVisit(
            c.visit_key,
            c.person_key,
            admitted or r.sent,
            end,
            klass,
            r.location,
            r.raw,
            warnings=tuple(r.warnings),
            version=r.version,
            open_visit=not number and r.event in DISCHARGES,
            admitted=admitted is not None,
            cancels=not number and cancels,
        )
    )


def _cancel(r: _Reader, pv1: Any, c: _Context) -> None:
    """An A11's PV1: the visit PV1-19 names is withdrawn (its rows removed), unless a
    newer message (MSH-7) gave the visit: the A11 is then superseded."""
    number = _qualified(r, pv1, 19, (4, 6))
    key = f"visit/{number}" if number else f"visit/{c.scope}"
    c.visit_key = key
    if not number:
        message = "the A11 names no visit (PV1-19 is empty): nothing is cancelled"
        r.out.append(Skipped(key, r.location, CANCEL_UNNAMED, message))
        return
    message = f"{r.event} cancels the visit {number}"
    r.out.append(
        Skipped(key, r.location, CANCELLED, message, withdraws=True, amends=True, version=r.version)
    )


def _diagnosis(r: _Reader, dg1: Any, c: _Context, index: int) -> None:
    m = r.m
    code = m.get(dg1, 3)
    key = f"{c.visit_key or c.scope}/DG1/{m.get(dg1, 1) or code or index}"
    if not code:
        r.reject(key, "hl7.dg1.code_missing", f"DG1 {m.get(dg1, 1) or index}: DG1-3 has no code")
        return
    r.out.append(
        SourceEvent(
            key=key,
            person_key=c.person_key,
            system=hl7_system(m.get(dg1, 3, 3) or m.get(dg1, 2)),
            code=code,
            start=r.when(m.get(dg1, 5), "DG1-5") or r.sent,
            default_table="condition_occurrence",
            location=r.location,
            raw=r.raw,
            visit_key=c.visit_key,
            warnings=tuple(r.warnings),
            alternate=_alternate(m, dg1, 3),
        )
    )


def _result(r: _Reader, obx: Any, c: _Context) -> None:
    """One OBX: a measurement, coded observation or text line; quarantined or skipped alone."""
    m = r.m
    code = m.get(obx, 3)
    sub = m.get(obx, 4) or m.get(obx, 1) or str(c.results)
    key = "/".join(filter(None, ("result", c.owner, c.order, code, sub)))
    where = f"OBX {m.get(obx, 1) or c.results}"
    if not code:
        r.reject(key, "hl7.obx.code_missing", f"{where} has no OBX-3 code")
        return
    status = m.get(obx, 11).upper()
    value_type = _value_type(m, obx)
    if status in NOT_A_FACT:
        rule = f"hl7.obx.status.{status}"
        withdraws = status in WITHDRAWING
        if value_type in TEXT_TYPES:  # a text result's lines were stored as its note
            key = _note_key(m, obx, c, code)
        r.out.append(
            Skipped(
                key,
                r.location,
                rule,
                f"{where}: {NOT_A_FACT[status]}",
                withdraws=withdraws,
                amends=withdraws,  # D and W correct a result sent before
            )
        )
        return
    if value_type in OPAQUE_TYPES:
        rule = f"hl7.obx.value_type.{value_type}"
        r.out.append(Skipped(key, r.location, rule, f"{where}: {value_type} is not stored"))
        return
    if value_type not in TEXT_TYPES and m.blank(obx, 5):
        message = f"{where}: OBX-5 carries no value"
        r.out.append(Skipped(key, r.location, "hl7.obx.value_missing", message))
        return
    start = r.when(m.get(obx, 14), "OBX-14") or c.order_time
    warnings = (*c.order_warnings, *r.warnings)
    if value_type in TEXT_TYPES:
        _text_line(r, obx, c, code, start, warnings)
        return
    fields: dict[str, Any] = {}
    table = "observation"
    repeats = [n for n in range(1, m.repeats(obx, 5) + 1) if _repetition(m, obx, n)]
    if value_type in ("NM", "SN") and len(repeats) > 1:
        message = (
            f"{where} is {value_type} with {len(repeats)} values in OBX-5: which is the "
            "result is not said (send one OBX each)"
        )
        r.reject(key, "hl7.obx.value_repeated", message)
        return
    if value_type in CODED_TYPES and repeats not in ([], [1]):  # a list: each value a fact
        for n in repeats:
            coded = _coded(m, obx, n)
            if coded is not None:
                each = key if n == repeats[0] else f"{key}/~{n}"
                r.out.append(_event(r, obx, c, each, start, table, warnings, coded))
        return
    if value_type in ("NM", "SN"):
        try:
            number = _number(m, obx, value_type, repeats[0] if repeats else 1)
        except ValueError as exc:
            r.reject(key, "hl7.obx.value_not_numeric", f"{where} is {value_type}: {exc}")
            return
        if number.comma:
            warnings = (*warnings, DECIMAL_COMMA)
        table = "measurement"
        fields = {"value": number.value, "operator": number.operator, "text": number.text}
        fields["unit"] = m.get(obx, 6) or m.get(obx, 6, 2) or None  # ^mmHg^UCUM: text only
    elif value_type in CODED_TYPES:  # its code, or (`^Positive`) its text only
        coded = _coded(m, obx, 1)
        if coded is None:
            message = f"{where}: OBX-5 carries neither code nor text"
            r.out.append(Skipped(key, r.location, "hl7.obx.value_missing", message))
            return
        fields = coded
    elif m.get(obx, 5):
        fields = {"text": "\n".join(m.lines(obx, 5))}
    r.out.append(_event(r, obx, c, key, start, table, warnings, fields))


def _event(
    r: _Reader, obx: Any, c: _Context, key: str, start, table: str, warnings, fields: dict
) -> SourceEvent:
    """The fact of one OBX (or one coded value of its OBX-5 list) under `key`."""
    m = r.m
    return SourceEvent(
        key=key,
        person_key=c.person_key,
        system=hl7_system(m.get(obx, 3, 3)),
        code=m.get(obx, 3),
        start=start,
        default_table=table,
        location=r.location,
        raw=r.raw,
        visit_key=c.visit_key,
        warnings=warnings,
        alternate=_alternate(m, obx, 3),
        version=r.version,
        **fields,
    )


def _repetition(m: _Message, obx: Any, repeat: int) -> bool:
    """Whether repetition `repeat` of OBX-5 carries anything."""
    return any(m.get(obx, 5, i, repeat) for i in range(1, 10))


def _coded(m: _Message, obx: Any, repeat: int) -> dict[str, Any] | None:
    """The value of one repetition of a coded OBX-5: its code, else its text; None if empty."""
    if m.get(obx, 5, 1, repeat):
        return {"value_code": (hl7_system(m.get(obx, 5, 3, repeat)), m.get(obx, 5, 1, repeat))}
    text = m.get(obx, 5, 2, repeat) or m.get(obx, 5, 9, repeat) or m.get(obx, 5, 5, repeat)
    return {"text": text} if text else None


def _alternate(m: _Message, segment: Any, field: int) -> tuple[str, str] | None:
    """A CE/CWE field's alternate code (components 4 and 6) as (system, code), if sent."""
    code = m.get(segment, field, 4)
    return (hl7_system(m.get(segment, field, 6)), code) if code else None


def _value_type(m: _Message, obx: Any) -> str:
    """OBX-2, except that a number sent as ST with a unit (OBX-6), or without OBX-2 at all,
    is NM: `ST|…||140|mmol/L`, `||…||<2.0|mmol/L` are measurements. A value with
    components (`10^9`) or that reads as a date (`20230101`) stays text."""
    value_type = m.get(obx, 2).upper()
    if value_type not in ("", "ST") or (value_type == "ST" and not m.get(obx, 6)):
        return value_type
    repeat = next((n for n in range(1, m.repeats(obx, 5) + 1) if _repetition(m, obx, n)), 1)
    value = m.get(obx, 5, 1, repeat)
    if any(m.get(obx, 5, i, repeat) for i in range(2, 5)) or _date_like(value):
        return value_type
    try:
        number = numeric(value) if value else None
    except ValueError:
        number = None
    return "NM" if number is not None else value_type


def _date_like(value: str) -> bool:
    """Whether a value is an HL7 date or time (YYYYMMDD, with or without its time)."""
    if not (value.isdigit() and len(value) in (8, 10, 12, 14)):
        return False
    try:
        return timestamp(value) is not None
    except ValueError:
        return False


def _number(m: _Message, obx: Any, value_type: str, repeat: int = 1) -> Number:
    """The NM or SN value of OBX-5's repetition `repeat` (the one that carries the value: a
    sender may put an empty one first, `~5.4`)."""
    if value_type == "NM":
        return numeric(m.get(obx, 5, 1, repeat))
    return structured(*(m.get(obx, 5, i, repeat) for i in range(1, 5)))


def _text_line(r: _Reader, obx: Any, c: _Context, code: str, start, warnings) -> None:
    """A TX/FT/ST result: its lines join the note of its order, code and sub-id (see
    _note_key)."""
    key = _note_key(r.m, obx, c, code)
    lines = r.m.lines(obx, 5)
    note = c.text.get(key)
    if note is None:
        c.text[key] = SourceEvent(
            key=key,
            person_key=c.person_key,
            system=hl7_system(r.m.get(obx, 3, 3)),
            code=code,
            start=start,
            default_table="note",
            location=r.location,
            raw=r.raw,
            visit_key=c.visit_key,
            text="\n".join(lines),
            detail={"title": r.m.get(obx, 3, 2)},
            warnings=warnings,
        )
    elif lines:
        note.text = "\n".join(filter(None, (note.text, *lines)))


def _note_key(m: _Message, obx: Any, c: _Context, code: str) -> str:
    """The record key of the note a text result's lines join: TX and FT lines of one order,
    code and OBX-4 are one report sent line by line; an ST result is a value of its own
    (its OBX-1 too), never joined to another."""
    sub = m.get(obx, 4)
    single = f"ST{m.get(obx, 1)}" if m.get(obx, 2).upper() == "ST" else ""
    return "/".join(filter(None, ("note", c.owner, c.order, code, sub, single)))


def _flush_text(r: _Reader, c: _Context) -> None:
    r.out.extend(c.text.values())
    c.text = {}


def _document(r: _Reader, c: _Context) -> None:
    """An MDM message's document (TXA and its OBX text) as one note."""
    m, txa = r.m, c.document
    number = _qualified(r, txa, 12, (2, 3, 4)) if txa is not None else ""
    key = f"document/{number or c.scope}"
    lines = [
        line
        for obx in c.document_lines
        if m.get(obx, 2).upper() in TEXT_TYPES
        for line in m.lines(obx, 5)
    ]
    if not lines:
        rule = "hl7.mdm.no_text"
        r.out.append(Skipped(key, r.location, rule, "the document carries no TX/FT/ST text"))
        return
    r.warnings = []
    start = None
    if txa is not None:
        start = r.when(m.get(txa, 4), "TXA-4") or r.when(m.get(txa, 6), "TXA-6")
    first = c.document_lines[0]
    r.out.append(
        SourceEvent(
            key=key,
            person_key=c.person_key,
            system=DOCUMENT_TYPES if txa is not None and m.get(txa, 2) else "",
            code=(m.get(txa, 2) if txa is not None else "") or m.get(first, 3),
            start=start or r.sent,
            default_table="note",
            location=r.location,
            raw=r.raw,
            visit_key=c.visit_key,
            text="\n".join(lines),
            detail={"title": (m.get(txa, 2, 2) if txa is not None else "") or m.get(first, 3, 2)},
            warnings=tuple(r.warnings),
        )
    )


def read_file(path: Path, identity: PersonIdentity | None = None) -> Iterator[SourceRecord]:
    """Yield the records of every message in a file (plain or gzip-compressed, known by its
    magic number), read a piece at a time; a message longer than textfile.MAX_LINE is
    quarantined (`hl7.message_too_long`), never held whole."""
    with path.open("rb") as plain:
        compressed = plain.read(2) == b"\x1f\x8b"
        plain.seek(0)
        with gzip.GzipFile(fileobj=plain) if compressed else nullcontext(plain) as handle:
            for offset, message in stream_messages(handle):
                where = f"{path}@{offset}"
                if message is None:
                    limit = f"{textfile.MAX_LINE:,}"
                    reason = f"{where}: the message is longer than {limit} bytes"
                    yield Rejected(None, where, "hl7.message_too_long", reason, b"")
                    continue
                yield from parse_message(message, where, identity)


#: How much of a file is read at a time.
_PIECE = 1024 * 1024


def stream_messages(handle: BinaryIO, piece: int = _PIECE) -> Iterator[tuple[int, bytes | None]]:
    """`split_messages` of an open binary file, read `piece` bytes at a time and cut before a
    message start; (offset, None) for a message longer than textfile.MAX_LINE (read past)."""
    base, buffer, skipping = 0, b"", False
    while True:
        data = handle.read(piece)
        buffer += data
        cut = _last_start(buffer) if data else len(buffer)
        if cut > 0:
            if skipping:
                skipping = False
            else:
                for offset, message in split_messages(buffer[:cut]):
                    yield base + offset, message if len(message) <= textfile.MAX_LINE else None
            base, buffer = base + cut, buffer[cut:]
        elif len(buffer) > textfile.MAX_LINE:
            if not skipping:
                yield base, None
                skipping = True
            base, buffer = base + len(buffer) - 16, buffer[-16:]
        if not data:
            return


def _last_start(data: bytes) -> int:
    """Where the last message of `data` starts (a frame's START, or a line `MSH` outside any
    frame), if after its first byte; else 0."""
    opened = data.rfind(START)
    if opened > 0:
        return opened
    closed = data.rfind(END)
    if opened == 0 and closed < 0:
        return 0  # inside the first frame
    starts = [m.start() for m in _MSH.finditer(data, max(closed, 0))]
    return starts[-1] if starts and starts[-1] > 0 else 0


def read_path(path: Path, identity: PersonIdentity | None = None) -> Iterator[SourceRecord]:
    """Read an HL7 v2 file or every file in a folder, in name order; `identity` is the
    site's person identifier (see parse_message)."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        yield from read_file(file, identity)
