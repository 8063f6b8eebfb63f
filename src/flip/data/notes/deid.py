"""De-identification of free-text notes by rules: find identifying spans, replace them.

Kinds found: NAME, DATE, NHS_NUMBER (valid mod-11 check digit, or labelled "NHS"), MRN
(labelled hospital numbers and letter+digit identifiers), PHONE (UK, with its extension),
ADDRESS, POSTCODE (UK), EMAIL, AGE (an age over 89, which HIPAA's Safe Harbor treats as an
identifier). Names come from titles ("Mr J. Smith"), letter contexts ("Re:", "Dear", the signature)
and then every other whole-word occurrence of a name word already found in the same note.
Spans are replaced by typed placeholders ("[NAME]"), or dates shifted by a per-person offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from flip.data.notes.names import COMMON_WORD_NAMES, GIVEN_NAMES

PHI_KINDS = ("NAME", "DATE", "NHS_NUMBER", "MRN", "PHONE", "ADDRESS", "POSTCODE", "EMAIL", "AGE")

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
#: Welsh month names (letters from NHS Wales are often bilingual): in a full date only.
_MONTH_CY = (
    r"(?:Ionawr|Chwefror|Mawrth|Ebrill|Mai|Mehefin|Gorffennaf|Awst|Medi|Hydref|Tachwedd|"
    r"Rhagfyr)"
)
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
_ORDINAL = r"(?:[0-3]?\d)(?:st|nd|rd|th)"
_WEEKDAY = r"(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?\.?,?\s+"
#: A month named with a capital and without a year: May only after an ordinal or a weekday.
_MONTH_CAP = (
    r"(?-i:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b"
)
#: Where a date can start (a digit, a weekday or a month), to skip other words quickly.
_DATE_START = (
    r"\b(?=\d|mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
    r"|chr|eas|box|new)"
)
_DATE = re.compile(
    rf"{_DATE_START}(?:\b(?:{_WEEKDAY})?(?:{_DAY}(?:\s+|-)(?:of\s+)?{_MONTH}(?:,?\s+|-)\d{{2,4}}"
    rf"|{_DAY}\s+{_MONTH_CY}\s+\d{{4}}"
    rf"|{_MONTH}\s+{_DAY},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{4}}"
    r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    r"|[0-3]?\d[/.\-][01]?\d[/.\-](?:\d{4}|\d{2}))\b"
    rf"|\b{_WEEKDAY}{_DAY}\s+(?:of\s+)?{_MONTH}(?![\w])"
    rf"|\b{_WEEKDAY}{_ORDINAL}\b"
    rf"|\b{_WEEKDAY}[0-3]?\d/[01]?\d\b(?!/)"
    rf"|\b(?-i:{_MONTH})(?:-|\s'|')\d{{2}}\b(?![/.\-]\d)"
    rf"|\b{_ORDINAL}\s+(?:of\s+)?{_MONTH}(?![\w])"
    rf"|\b[0-3]?\d\s+{_MONTH_CAP}(?!\w)"
    rf"|\b(?-i:{_MONTH})\s+{_ORDINAL}\b"
    r"|\b(?-i:Christmas|Easter|Boxing|New Year's)(?:[ \t]+(?-i:Day|Eve))?[ \t]+\d{4}\b)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_NHS_SHAPE = re.compile(r"(?<![\d])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![\d])")
_NHS_LABEL = re.compile(r"NHS\s*(?:No\.?|number|num|#)?\s*[:.]?\s*$", re.IGNORECASE)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+44\s?\(?0?\)?\s?\d|\(?0\d)[\d\s()-]{8,15}\d(?![\d])",
)
_EXTENSION = re.compile(r"[ \t]*,?[ \t]*\(?(?i:ext(?:n|ension)?\.?|x)[ \t]*\d{1,5}\b\)?")
#: An age over 89 (a HIPAA Safe Harbor identifier): "92-year-old", "aged 96", "94 yrs",
#: "Age: 93", and spelled out ("ninety-three") where it reads as an age.
_OLD = r"(?:9\d|1[01]\d)"
_SPELLED_OLD = (
    r"(?:ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|one hundred"
    r"(?: and \w+)?|a hundred(?: and \w+)?)"
)
#: An age in days, weeks or months ("aged 91 days") is a baby's, not an age over 89.
_NOT_YEARS = r"[ \t]*(?:days?|weeks?|months?|d\b|w\b|m\b|/)"
_AGE = re.compile(
    rf"\b(?:{_OLD}|{_SPELLED_OLD})[- ]?(?:years?|yrs?|y)[- ]?(?:old|o)\b"
    rf"|\b{_OLD}[ ]?(?:yrs?|yo|y/o|y\.o\.)(?![\w/])"
    rf"|\b(?i:aged|age)[ \t]*:?[ \t]*(?:{_OLD}|{_SPELLED_OLD})\b(?!{_NOT_YEARS})"
    rf"|\b(?i:turns|turned|turning)\s+(?:{_OLD}|{_SPELLED_OLD})\b"
    rf"|(?<=, ){_SPELLED_OLD}(?=,)",
    re.IGNORECASE,
)
#: The UK's postcode areas: a postcode typed in lower case counts only with one of them.
_AREAS = (
    "ab|al|b|ba|bb|bd|bh|bl|bn|br|bs|bt|ca|cb|cf|ch|cm|co|cr|ct|cv|cw|da|dd|de|dg|dh|dl|dn|"
    "dt|dy|e|ec|eh|en|ex|fk|fy|g|gl|gu|gy|hd|hg|hp|hr|hs|hu|hx|ig|im|ip|iv|je|ka|kt|kw|ky|l|"
    "la|ld|le|ll|ln|ls|lu|m|me|mk|ml|n|ne|ng|nn|np|nr|nw|ol|ox|pa|pe|ph|pl|po|pr|rg|rh|rm|s|"
    "sa|se|sg|sk|sl|sm|sn|so|sp|sr|ss|st|sw|sy|ta|td|tf|tn|tq|tr|ts|tw|ub|w|wa|wc|wd|wf|wn|"
    "wr|ws|wv|yo|ze"
)
_POSTCODE = re.compile(
    r"\b(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|GIR\s*0AA"
    rf"|(?:{_AREAS})\d[a-z\d]?\s?\d[a-z]{{2}})\b"
)
_MRN_LABELLED = re.compile(
    r"\b(?:Hosp(?:ital)?\.?\s*(?:No|Number|#)|MRN|Unit\s*No|Patient\s*ID|RX\s*No|"
    r"Case\s*No|Referral\s*(?:ID|No|Number)|(?:Our|Your)\s*ref)\.?\s*[:.#]?\s*"
    r"((?=[A-Z0-9/-]*\d)[A-Z0-9][A-Z0-9/-]{2,}(?:[ ]\d{3,})?|[A-Z]{1,4}[ ]\d{4,})",
    re.IGNORECASE,
)
_MRN_SHAPE = re.compile(r"\b[A-Z]{1,4}\d{6,}[A-Z]?\b")
_STREET = (
    r"(?:Road|Rd|Street|St|Lane|Ln|Avenue|Ave|Close|Drive|Way|Court|Ct|Crescent|Place|"
    r"Grove|Gardens|Terrace|Hill|Park|Square|Row|Walk|Mews|Rise|View|Green|Parade)"
)
#: A capital (accented too: Welsh, Irish, European names and places) and a lower-case word.
_CAPITAL = "A-ZÀ-ÖØ-ÞŴŶ"
_WORD = rf"[{_CAPITAL}](?:[^\W\d_A-Z]|['\-])+"
_BUILDING = r"(?:House|Court|Lodge|Mansions|Buildings|Cottages?|Farm|Hall|Tower)"
#: A flat's number as UK addresses write it: "3", "12B", Edinburgh's "2F1" (floor 2, flat 1).
_FLAT = r"(?:Flat|Apartment|Unit)[ \t]+\d[\dA-Za-z/]{0,4}"
_ADDRESS = re.compile(
    rf"\b(?:{_FLAT},?[ \t]+)?"
    rf"(?:(?:{_WORD}[ \t]+){{1,2}}{_BUILDING},?[ \t]+)?\d{{1,4}}[A-Za-z]?,?[ \t]+"
    rf"(?:{_WORD}[ \t]+){{1,3}}{_STREET}\b\.?"
    rf"(?:,[ \t]*{_WORD}(?:[ \-]{_WORD}){{0,2}}){{0,2}}"
    rf"|\b{_FLAT},?[ \t]+(?:{_WORD}[ \t]+){{1,2}}{_BUILDING}\b"
    rf"|\b(?:{_WORD}[ \t]+){{1,3}}(?:Care|Nursing|Residential|Retirement)[ \t]+Home\b"
)
#: A line that is a street name alone ("Chapeltown Road").
_STREET_LINE = re.compile(
    rf"^[ \t]*(?:(?:{_WORD}[ \t]+){{1,3}}{_STREET}|(?:Flat|Apartment)[ \t]+\d[\dA-Za-z/]{{0,4}})"
    r",?[ \t]*$",
    re.MULTILINE,
)
#: A street or locality without a number, one part of a postcode's line.
_PLACE_PART = re.compile(rf"[ \t]*({_WORD}(?:[ \t]+(?:{_WORD}|y|yr|upon|on|le|de)){{0,3}})[ \t]*")
#: A town before a postcode on its line, or alone on the line above a postcode's own line.
_TOWN = re.compile(rf"({_WORD}(?:[ \t]+{_WORD})?),?[ \t]*$")
_ORGANISATION = re.compile(
    r"\b(?:Hospital|Surgery|Practice|Centre|Clinic|Department|Ward|Trust|Unit|Health|NHS|"
    r"Dermatology|Wing|Outpatients?|Medical|Dear|Re|Tel|Fax|Mr|Mrs|Ms|Miss|Dr|Prof|Building|"
    r"Block|Level|Floor|Suite|Infirmary)\b"
)
#: The address line before a postcode: from a house number to the postcode, on one line.
_BEFORE_POSTCODE = re.compile(
    rf"\b(?:(?:Flat|Apartment|Unit)[ \t]+)?\d{{1,4}}[A-Za-z]?,?[ \t]+{_WORD}"
    rf"(?:[ \t,]+{_WORD}){{0,6}},?[ \t]*$"
)
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sister|Sr|Nurse|Rev)"
_NAME_PART = rf"[{_CAPITAL}](?:[^\W\d_]|['\-])+"
_INITIALS = r"(?:[A-Z]\.?[ \t]*){1,3}"
_TITLED = re.compile(
    rf"\b{_TITLE}\.?[ \t]+(?:{_INITIALS}[ \t]*)?{_NAME_PART}(?:[ \-]{_NAME_PART})?(?![^\W\d_])"
)
_FULL = rf"(?:{_NAME_PART}\s+(?:{_INITIALS}\s*)?{_NAME_PART}|[A-Z'\-]{{2,}},\s*{_NAME_PART})"
_CONTEXT = re.compile(
    r"(?:\bRe|\b(?i:next of kin|nok|seen with|accompanied by|spoke to)|\bDear"
    r"|\b(?i:(?:witnessed|signed|seen|reviewed|dictated|written|completed|verified) by)"
    r"|\bcc|\bFrom|\bTo|\b(?i:sincerely|faithfully|regards|best wishes|with thanks)"
    r"|\b(?i:patient(?:'s)? name|patient|name)(?=\s*:))"
    rf"\s*[:,]?\s*({_FULL})"
)
#: A lower-case title and name, as typed in haste ("seen by dr smith").
_LOWER_TITLED = re.compile(r"\b(?:dr|mr|mrs|prof)\.?[ \t]+([a-z][a-z'\-]{2,})\b")
_RELATIVE = re.compile(
    r"\b(?i:wife|husband|partner|(?:grand|step)?(?:daughter|son|mother|father)|sister|brother|"
    r"friend|carer|relative|niece|nephew|aunt|uncle|cousin|neighbour|mum|dad|guardian)"
    rf"(?:'s)?[ \t]*,?[ \t]*\(?({_NAME_PART}(?:[ \t]+{_NAME_PART})?)"
)
#: A name at the start of a line followed by a role: a signature ("Jane Doe, Consultant ...").
_SIGNATURE = re.compile(
    rf"^[ \t]*({_NAME_PART}(?:[ \t]+{_INITIALS})?[ \t]+{_NAME_PART}),?[ \t]*\n?[ \t]*"
    r"(?=(?:Consultant|Specialty|Specialist|Speciality|Registrar|Clinical|Nurse|Associate|"
    r"Senior|Staff|General Practitioner|GP|Locum|Foundation|Core|Trainee|Dermatologist|"
    r"Physician|Sister|Matron|Medical Secretary|Secretary)\b)",
    re.MULTILINE,
)
#: A first name alone after a greeting ("Dear Siobhan,", "Hi Tom"), as colleagues write.
_GREETING = re.compile(rf"\b(?:Dear|Hi|Hello)[ \t]+({_NAME_PART})[ \t]*(?=[,\n]|$)", re.MULTILINE)
_NOT_GREETED = {
    "Colleague", "Colleagues", "Sir", "Sirs", "Madam", "All", "Team", "Doctor", "Parent", "Parents",
    "Carer", "Friend", "Friends", "Everyone",
}  # fmt: skip
#: A first name alone on its line under a sign-off line.
_SIGN_OFF = re.compile(
    r"^[ \t]*(?i:(?:many |with )?thanks|thank you|(?:kind |best |warm )?regards|best wishes|best"
    rf"|cheers)[ \t]*[,.!]?[ \t]*\n[ \t]*({_NAME_PART})[ \t]*$",
    re.MULTILINE,
)
#: What follows a sentence-initial name word that is also an ordinary word ("Rose", "Hope",
#: "Mark", "Will") when it is the subject: a verb letters use of a patient or a modal ("Rose
#: reports", "Hope is", "Mark has had"), not a verb's object nor a noun ("Mark the lesion",
#: "Will need bloods", "Brown plaques", "Rose coloured").
_PERSON_VERB = (
    r"[ \t]+(?:is|was|has|had|does|did|reports?|reported|says|said|feels|felt|describes|"
    r"described|denies|denied|complains|complained|attends|attended|lives|lived|works|worked|"
    r"uses|used|remains|remained|continues|continued|tells|told|presents|presented|returns|"
    r"returned|developed|noticed|notices|mentions|mentioned|manages|managed|takes|took|"
    r"applies|applied|wants|wanted|wishes|wished|asks|asked|agrees|agreed|declines|declined|"
    r"understands|understood|prefers|preferred|needs|needed|tried|tries|knows|knew|thinks|"
    r"thought|finds|found|stopped|started|stops|starts|smokes|smoked|drinks|drank|sleeps|"
    r"slept|struggles|struggled|explains|explained|went|came|saw|would|will|can|could|should|"
    r"may|might|must)\b"
)
#: A known given name then a capitalised word: "John Smith", "Mark Taylor", "Grace WALSH".
_FAMILY = rf"(?:{_NAME_PART}|[A-Z]{{2,}})(?![\w\-])"
_GIVEN_FAMILY = re.compile(rf"\b([A-Z][a-z]+)[ \t]({_FAMILY})(?:[ \t]({_FAMILY}))?")
_NOT_FAMILY = {
    "The", "And", "Road", "Street", "Lane", "Hospital", "Ward", "Clinic", "Surgery", "House",
    "Court", "Unit", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
    "Sunday", "Dermatology", "Department", "Centre", "Practice", "NHS", "GP", "DOB",
    "MRN", "CHI", "DOD", "ID", "URN", "REF", "TEL", "FAX", "MOB", "RE",
}  # fmt: skip
#: Words of job titles, teams and services: a "name" made of one of them is a role line of a
#: signature block ("Tissue Viability", "Nurse Specialist"), not a person.
_ROLE_WORDS = {
    "Tissue", "Viability", "Specialist", "Specialty", "Speciality", "Clinical", "Lead",
    "Nurse", "Nursing", "Advanced", "Practitioner", "Community", "Senior", "Junior", "Staff",
    "Team", "Service", "Services", "Medical", "Secretary", "Outpatient", "Outpatients",
    "Appointments", "Administrator", "Manager", "Coordinator", "Co-ordinator", "Direct",
    "Line", "Associate", "Registrar", "Consultant", "Liaison", "Fellow",
}  # fmt: skip
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
    phones = [_phone(m) for m in _PHONE.finditer(text) if _phone_digits(m.group())]
    for m in _NHS_SHAPE.finditer(text):
        labelled = _NHS_LABEL.search(text[max(0, m.start() - 20) : m.start()])
        in_phone = any(p.start < m.start() and m.end() <= p.end for p in phones)
        if labelled or (nhs_valid(m.group()) and not in_phone):
            found.append(Span(m.start(), m.end(), "NHS_NUMBER"))
    found += phones
    found += [Span(m.start(1), m.end(1), "MRN") for m in _MRN_LABELLED.finditer(text)]
    found += [Span(m.start(), m.end(), "MRN") for m in _MRN_SHAPE.finditer(text)]
    postcodes = [Span(m.start(), m.end(), "POSTCODE") for m in _POSTCODE.finditer(text)]
    found += postcodes + [a for p in postcodes if (a := _address_before(text, p.start))]
    found += [Span(m.start(), m.end(), "DATE") for m in _DATE.finditer(text)]
    found += [Span(m.start(), m.end(), "AGE") for m in _AGE.finditer(text)]
    found += [Span(m.start(), m.end(), "ADDRESS") for m in _ADDRESS.finditer(text)]
    found += _lines_before_postcode(text, postcodes)
    found += [Span(m.start(), m.end(), "ADDRESS") for m in _STREET_LINE.finditer(text)]
    names = []
    for pattern in (_CONTEXT, _RELATIVE, _SIGNATURE):
        names += [Span(m.start(1), m.end(1), "NAME") for m in pattern.finditer(text)]
    names += [_given_family(m) for m in _GIVEN_FAMILY.finditer(text) if m.group(1) in GIVEN_NAMES]
    names = [n for n in names if n.end > n.start]
    names = [n for n in names if text[n.start : n.end].split()[0].capitalize() not in _NOT_NAMES]
    for pattern in (_TITLED, _LOWER_TITLED):
        names += [Span(m.start(), m.end(), "NAME") for m in pattern.finditer(text)]
    names += _sign_offs(text)
    names = [n for n in names if not _ROLE_WORDS & set(re.split(r"[\s,]+", text[n.start : n.end]))]
    found += names + _name_repeats(text, names)
    return _resolve(found)


def _phone_digits(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw.replace("(0)", ""))
    return 10 <= len(digits) <= 12


def _phone(m: re.Match[str]) -> Span:
    """The phone number `m` found, with the extension that follows it ("ext 4521", "x23")."""
    end = m.end()
    while m.string[end - 1] in " -(":
        end -= 1
    extension = _EXTENSION.match(m.string, end)
    if extension:
        end = extension.end()
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


def _given_family(m: re.Match[str]) -> Span:
    """A known given name and the one or two family-name words after it ("Harjit Singh Gill");
    an empty span when the word after it is no family name ("John Street")."""
    end = m.start()
    if _family_word(m.group(2)):
        end = m.end(2)
        if m.group(3) and _family_word(m.group(3)):
            end = m.end(3)
    return Span(m.start(), end, "NAME")


def _family_word(word: str) -> bool:
    """False for a word that names a place, a building or a role rather than a family."""
    place = re.fullmatch(rf"{_STREET}|{_BUILDING}", word) or _ORGANISATION.fullmatch(word)
    return not place and word not in _NOT_FAMILY and word not in _NOT_NAMES


def _lines_before_postcode(text: str, postcodes: list[Span]) -> list[Span]:
    """The town before a postcode on its line, or on the line above a postcode alone."""
    spans = []
    for p in postcodes:
        line_start = text.rfind("\n", 0, p.start) + 1
        before = text[line_start : p.start]
        spans += _streets_before(text, line_start, before)
        if not before.strip() and line_start > 0:
            above = text.rfind("\n", 0, line_start - 1) + 1
            line = text[above : line_start - 1]
            m = re.fullmatch(rf"[ \t]*({_WORD}(?:[ \t]+{_WORD})?),?[ \t]*", line)
            if m and not _ORGANISATION.search(line):
                spans.append(Span(above + m.start(1), above + m.end(1), "ADDRESS"))
        elif (m := _TOWN.search(before)) and not _ORGANISATION.search(m.group(1)):
            spans.append(Span(line_start + m.start(1), line_start + m.end(1), "ADDRESS"))
    return spans


def _streets_before(text: str, line_start: int, before: str) -> list[Span]:
    """The places named before a town on a postcode's line, one comma-separated part each
    ("Chapeltown Road, Leeds LS7 4SA", "Penrhosgarnedd, Bangor LL57 2PW"): a street or
    locality of one to three words; not a part with a number (the address rules read those)
    or a hospital, practice or ward."""
    spans = []
    parts = list(re.finditer(r"[^,]+", before))
    for m in parts[:-1]:
        part = _PLACE_PART.fullmatch(m.group())
        if part and not _ORGANISATION.search(m.group()):
            start = line_start + m.start() + part.start(1)
            spans.append(Span(start, start + len(part.group(1)), "ADDRESS"))
    return spans


def _name_repeats(text: str, names: list[Span]) -> list[Span]:
    """Other whole-word occurrences of the words of names already found; a word that is also
    an ordinary word ("Brown", "Mark") only where capitalised and not starting a sentence, or
    starting one as the subject of a verb ("Rose reports"); a month ("May") only so."""
    words = {
        w
        for s in names
        for w in re.findall(r"(?:[^\W\d_]|')+", text[s.start : s.end])
        if len(w) >= 3 and w.capitalize() not in _NOT_NAMES
    }
    spans = []
    for word in words:
        forms = f"(?:{re.escape(word.capitalize())}|{re.escape(word.upper())})"
        if word.lower() in _MONTHS:
            pattern = re.compile(rf"\b{forms}(?={_PERSON_VERB})")
        elif word.lower() in COMMON_WORD_NAMES:
            pattern = re.compile(
                rf"(?<![.!?:\n]\s)(?<!^)\b{forms}(?![\w\-'])"
                rf"|(?:(?<=[.!?:\n]\s)|(?<=[.!?:]\s\s)|^){forms}(?={_PERSON_VERB})",
                re.MULTILINE,
            )
        else:
            pattern = re.compile(rf"(?<![\w\-]){re.escape(word)}(?![\w\-])", re.IGNORECASE)
        spans += [Span(m.start(), m.end(), "NAME") for m in pattern.finditer(text)]
    return spans


def _sign_offs(text: str) -> list[Span]:
    """A first name alone after a greeting ("Dear Siobhan,") or on the line under a sign-off
    ("Thanks" / "Joy"), as e-mails begin and end."""
    spans = [
        Span(m.start(1), m.end(1), "NAME")
        for m in _GREETING.finditer(text)
        if m.group(1) not in _NOT_GREETED and m.group(1).capitalize() not in _NOT_NAMES
    ]
    for m in _SIGN_OFF.finditer(text):
        word = m.group(1)
        if word.capitalize() not in _NOT_NAMES and word not in _ROLE_WORDS:
            spans.append(Span(m.start(1), m.end(1), "NAME"))
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
