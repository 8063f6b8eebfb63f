"""What the store cannot keep, handled once for every source where records become rows.

PostgreSQL text cannot hold NUL (U+0000), whichever reader it came from: NULs are removed
from a record's keys when it enters the map stage, and from every text value of the rows
a batch lays out (counted per row as the warning `text.nul_removed`). A record key is at
most `MAX_KEY` characters (`source_record.record_key`): a record with a longer one is
quarantined under `source.key_too_long`, its key not kept. A rule or warning name a reader
made from what the source sent (an HL7 message type, a FHIR element name) loses its NUL
and is cut to `RULE_LENGTH` characters (`quarantine.rule`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from sqlalchemy import String, Text

from flip.data.cdm import schema
from flip.data.sources.records import MAX_KEY, BlockEvent, Rejected, SourceMerge, SourceRecord

NUL = "\x00"

#: The warning counted for each row whose text values held NUL characters (removed).
NUL_REMOVED = "text.nul_removed"

#: The rule of a record whose key is longer than the store keeps.
KEY_TOO_LONG = "source.key_too_long"

#: The longest rule or warning name the store keeps.
RULE_LENGTH = 60


def rule_name(rule: str) -> str:
    """A rule or warning name as the store keeps it: no NUL, at most RULE_LENGTH characters."""
    return rule.replace(NUL, "")[:RULE_LENGTH]


def _named(record: SourceRecord) -> SourceRecord:
    """`record` with its rule and warning names as the store keeps them (`rule_name`)."""
    rule = getattr(record, "rule", None)
    if rule is not None and rule_name(rule) != rule:
        record = replace(record, rule=rule_name(rule))  # type: ignore[type-var]
    warnings = getattr(record, "warnings", ())
    if any(rule_name(w) != w for w in warnings):
        record = replace(record, warnings=tuple(map(rule_name, warnings)))  # type: ignore[type-var]
    return record


def too_long(key: str | None, location: str, raw: bytes) -> Rejected | None:
    """The quarantine entry of a record whose key is over MAX_KEY characters, else None."""
    if key is None or len(key) <= MAX_KEY:
        return None
    message = f"its key is {len(key)} characters, over {MAX_KEY}: {key[:60]}..."
    return Rejected(None, location, KEY_TOO_LONG, scrub_text(message), raw)


def checked(record: SourceRecord) -> SourceRecord:
    """`record` with NUL removed from the keys the store looks up (its own, its person's, a
    merge's old person's), or its quarantine entry when its key is too long (a Rejected
    keeps its own rule, without a key the store cannot keep); rule and warning names as
    the store keeps them."""
    record = _named(record)
    key = getattr(record, "key", None)
    person = getattr(record, "person_key", None)
    if (
        (key is None or (len(key) <= MAX_KEY and NUL not in key))
        and (person is None or NUL not in person)
        and type(record) is not SourceMerge
    ):
        return record
    names = ("key", "person_key", "old_person_key")
    found = {name: getattr(record, name, None) for name in names}
    clean = {k: v.replace(NUL, "") for k, v in found.items() if isinstance(v, str) and NUL in v}
    if clean:
        record = replace(record, **clean)  # type: ignore[type-var]
        key = getattr(record, "key", None)
    if isinstance(record, Rejected):
        return replace(record, key=None) if key is not None and len(key) > MAX_KEY else record
    raw = getattr(record, "raw", None)
    if raw is not None:
        return too_long(key, record.location, raw) or record  # type: ignore[union-attr]
    return record


def checked_event(event: BlockEvent) -> BlockEvent | Rejected:
    """A block's event with NUL removed from its keys, or its quarantine entry (`checked`)."""
    if NUL in event.key or NUL in event.person_key:
        event = event._replace(
            key=event.key.replace(NUL, ""), person_key=event.person_key.replace(NUL, "")
        )
    return too_long(event.key, event.location, event.raw) or event


@cache
def _text_columns(table: str) -> frozenset[str]:
    columns = schema.metadata.tables[table].columns
    return frozenset(c.name for c in columns if isinstance(c.type, String | Text))


def scrub(table: str, columns: dict[str, list[object]]) -> int:
    """Remove NUL from the text columns of a table's rows, in place; how many rows held one."""
    rows: set[int] = set()
    for name in _text_columns(table) & columns.keys():
        values = columns[name]
        if not _may_hold_nul(values):
            continue
        for i, value in enumerate(values):
            if type(value) is str and NUL in value:
                values[i] = value.replace(NUL, "")
                rows.add(i)
    return len(rows)


def _may_hold_nul(values: list[object]) -> bool:
    """A quick look at a column: its distinct values joined (few, and C-speed) hold no NUL;
    a column holding something other than text is looked at value by value."""
    try:
        distinct = set(values)
        distinct.discard(None)
        return NUL in "".join(distinct)  # type: ignore[arg-type]
    except TypeError:
        return True


def scrub_text(text: str) -> str:
    """A message, location or key without NUL characters."""
    return text.replace(NUL, "") if NUL in text else text
