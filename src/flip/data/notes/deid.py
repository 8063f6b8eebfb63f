"""De-identification of free-text notes by rules: find identifying spans, replace them.

Kinds found: NAME, DATE, NHS_NUMBER (valid mod-11 check digit, or labelled "NHS"), MRN
(labelled hospital numbers and letter+digit identifiers), PHONE (UK), ADDRESS, POSTCODE (UK),
EMAIL. Names come from titles ("Mr J. Smith"), letter contexts ("Re:", "Dear", the signature)
and then every other whole-word occurrence of a name word already found in the same note.
Spans are replaced by typed placeholders ("[NAME]"), or dates shifted by a per-person offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

PHI_KINDS = ("NAME", "DATE", "NHS_NUMBER", "MRN", "PHONE", "ADDRESS", "POSTCODE", "EMAIL")

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"\b(?:{_DAY}\s+(?:of\s+)?{_MONTH},?\s+\d{{2,4}}"
    rf"|{_MONTH}\s+{_DAY},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{4}}"
    r"|\d{4}-\d{1,2}-\d{1,2}"
    r"|[0-3]?\d[/.\-][01]?\d[/.\-](?:\d{4}|\d{2}))\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_NHS_SHAPE = re.compile(r"(?<![\d])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![\d])")
_NHS_LABEL = re.compile(r"NHS\s*(?:No\.?|number|num|#)?\s*[:.]?\s*$", re.IGNORECASE)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+44\s?\(?0?\)?\s?\d|\(?0\d)[\d\s()-]{8,14}\d(?![\d])",
)
_POSTCODE = re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|GIR\s*0AA)\b")
_MRN_LABELLED = re.compile(
    r"\b(?:Hosp(?:ital)?\.?\s*(?:No|Number|#)|MRN|Unit\s*No|Patient\s*ID|RX\s*No|"
    r"Case\s*No)\.?\s*[:.#]?\s*([A-Z0-9][A-Z0-9/-]{3,})",
    re.IGNORECASE,
)
_MRN_SHAPE = re.compile(r"\b[A-Z]{1,4}\d{6,}\b")
_STREET = (
    r"(?:Road|Rd|Street|St|Lane|Ln|Avenue|Ave|Close|Drive|Way|Court|Ct|Crescent|Place|"
    r"Grove|Gardens|Terrace|Hill|Park|Square|Row|Walk|Mews|Rise|View|Green|Parade)"
)
_WORD = r"[A-Z][a-z'\-]+"
_ADDRESS = re.compile(
    rf"\b(?:(?:Flat|Apartment|Unit)[ \t]+\d+[A-Za-z]?,?[ \t]+)?\d{{1,4}}[A-Za-z]?,?[ \t]+"
    rf"(?:{_WORD}[ \t]+){{1,3}}{_STREET}\b\.?"
    rf"(?:,[ \t]*{_WORD}(?:[ \-]{_WORD}){{0,2}}){{0,2}}"
)
#: The address line before a postcode: from a house number to the postcode, on one line.
_BEFORE_POSTCODE = re.compile(
    rf"\b\d{{1,4}}[A-Za-z]?,?[ \t]+{_WORD}(?:[ \t,]+{_WORD}){{0,6}},?[ \t]*$"
)
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sister|Nurse|Rev)"
_NAME_PART = r"[A-Z][a-zA-Z'\-]+"
_INITIALS = r"(?:[A-Z]\.?\s*){1,3}"
_TITLED = re.compile(
    rf"\b{_TITLE}\.?\s+(?:{_INITIALS}\s*)?{_NAME_PART}(?:[ \-]{_NAME_PART})?(?![a-z])"
)
_FULL = rf"(?:{_NAME_PART}\s+(?:{_INITIALS}\s*)?{_NAME_PART}|[A-Z'\-]{{2,}},\s*{_NAME_PART})"
_CONTEXT = re.compile(
    rf"(?:\bRe|\bPatient|\bName|\bDear|\bcc|\bFrom|\bsincerely|\bfaithfully|\bregards)"
    rf"\s*[:,]?\s*({_FULL})"
)
_NOT_NAMES = {
    "The", "And", "Dear", "Yours", "Patient", "Consultant", "Dermatologist", "Hospital",
    "Department", "Clinic", "Doctor", "Nurse", "Sister", "Dermatology", "Regards", "Kind",
    "Re", "Name", "From", "Mr", "Mrs", "Ms", "Miss", "Dr", "Prof",
}  # fmt: skip


@dataclass(frozen=True)
class Span:
    """One identifying piece of text: characters [start, end) of kind `kind`."""

    start: int
    end: int
    kind: str


def nhs_valid(number: str) -> bool:
    """True when the 10 digits of `number` carry a valid NHS mod-11 check digit."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) != 10:
        return False
    check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == digits[9]


def find_phi(text: str) -> list[Span]:
    """Every identifying span in `text`, non-overlapping, sorted by position."""
    found: list[Span] = []
    found += [Span(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]
    for m in _NHS_SHAPE.finditer(text):
        labelled = _NHS_LABEL.search(text[max(0, m.start() - 20) : m.start()])
        if nhs_valid(m.group()) or labelled:
            found.append(Span(m.start(), m.end(), "NHS_NUMBER"))
    found += [_phone(m) for m in _PHONE.finditer(text) if _phone_digits(m.group())]
    found += [Span(m.start(1), m.end(1), "MRN") for m in _MRN_LABELLED.finditer(text)]
    found += [Span(m.start(), m.end(), "MRN") for m in _MRN_SHAPE.finditer(text)]
    postcodes = [Span(m.start(), m.end(), "POSTCODE") for m in _POSTCODE.finditer(text)]
    found += postcodes + [a for p in postcodes if (a := _address_before(text, p.start))]
    found += [Span(m.start(), m.end(), "DATE") for m in _DATE.finditer(text)]
    found += [Span(m.start(), m.end(), "ADDRESS") for m in _ADDRESS.finditer(text)]
    names = [Span(m.start(), m.end(), "NAME") for m in _TITLED.finditer(text)]
    names += [Span(m.start(1), m.end(1), "NAME") for m in _CONTEXT.finditer(text)]
    found += names + _name_repeats(text, names)
    return _resolve(found)


def _phone_digits(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 10 <= len(digits) <= 12


def _phone(m: re.Match[str]) -> Span:
    end = m.end()
    while m.string[end - 1] in " -(":
        end -= 1
    return Span(m.start(), end, "PHONE")


def _address_before(text: str, start: int) -> Span | None:
    line_start = text.rfind("\n", 0, start) + 1
    m = _BEFORE_POSTCODE.search(text[line_start:start])
    if m is None:
        return None
    end = line_start + m.end()
    while text[end - 1] in " \t,":
        end -= 1
    return Span(line_start + m.start(), end, "ADDRESS")


def _name_repeats(text: str, names: list[Span]) -> list[Span]:
    """Other whole-word occurrences of the words of names already found."""
    words = {
        w
        for s in names
        for w in re.findall(r"[A-Za-z'\-]{3,}", text[s.start : s.end])
        if w.capitalize() not in _NOT_NAMES
    }
    spans = []
    for word in words:
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        spans += [Span(m.start(), m.end(), "NAME") for m in pattern.finditer(text)]
    return spans


_PRIORITY = {k: i for i, k in enumerate(("EMAIL", "NHS_NUMBER", "PHONE", "MRN", "POSTCODE"))}


def _resolve(spans: list[Span]) -> list[Span]:
    """Keep, of overlapping spans, the surest kind first and then the longest."""
    ordered = sorted(spans, key=lambda s: (_PRIORITY.get(s.kind, 9), -(s.end - s.start)))
    kept: list[Span] = []
    for span in ordered:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def parse_date(raw: str) -> date | None:
    """The calendar date `raw` names (day first, as in the UK), or None when it names none."""
    m = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})", raw.strip())
    if m:
        day, month, year = (int(g) for g in m.groups())
    elif m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", raw.strip()):
        year, month, day = (int(g) for g in m.groups())
    else:
        words = re.findall(r"[A-Za-z]+|\d+", raw)
        months = [
            i + 1 for w in words for i, n in enumerate(_MONTHS) if n.startswith(w.lower()[:3])
        ]
        numbers = [int(w) for w in words if w.isdigit()]
        if not months or len(numbers) != 2:
            return None
        month, (day, year) = months[0], sorted(numbers)
    if year < 100:
        year += 2000 if year < 50 else 1900
    try:
        return date(year, month, day)
    except ValueError:
        return None


def deidentify(text: str, shift_days: int | None = None) -> str:
    """`text` with identifying spans replaced by "[KIND]"; dates shifted when `shift_days` is set.

    A shifted date is written as ISO (YYYY-MM-DD); a date that cannot be parsed becomes [DATE].
    """
    out, last = [], 0
    for span in find_phi(text):
        out.append(text[last : span.start])
        out.append(_replacement(text[span.start : span.end], span.kind, shift_days))
        last = span.end
    out.append(text[last:])
    return "".join(out)


def _replacement(raw: str, kind: str, shift_days: int | None) -> str:
    if kind == "DATE" and shift_days is not None:
        day = parse_date(raw)
        if day is not None:
            return (day + timedelta(days=shift_days)).isoformat()
    return f"[{kind}]"
