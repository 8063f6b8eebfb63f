"""The national data opt-out: patients on the site's list are left out of all research use.

The site's IG team keeps a file of the identifiers (NHS numbers, MRNs) of patients who
opted out, one a line. `load_optout` makes the store's list exactly the file's, as
HMAC-SHA256 hashes under a key the store makes for itself (never the identifiers in
clear). `opted_out` is the one place every count, histogram and feature extraction asks
whom to leave out: a patient is matched by their person_source_value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, insert, inspect, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.cohort.disclosure import SiteCount, suppress
from flip.data.sources.textfile import TextLines

#: person_source_value holds at most this many characters.
MAX_IDENTIFIER = 50
_BATCH = 500


class OptOutError(ValueError):
    """The opt-out file cannot be loaded; the message names the line and the reason."""


@dataclass(frozen=True)
class OptOutLoad:
    """What a load did: distinct identifiers in the file, hashes added and removed, and the
    persons of the store now left out (released like a count: suppressed when small)."""

    identifiers: int
    added: int
    removed: int
    excluded: SiteCount


def normalise(identifier: str) -> str:
    """An identifier as compared: no whitespace, upper case (`943 476 5919` is `9434765919`)."""
    return "".join(identifier.split()).upper()


def read_identifiers(path: Path) -> set[str]:
    """The identifiers of an opt-out file, one a line; blank lines and `#` lines skipped.

    The file is UTF-8 or UTF-16, with or without a byte order mark (as Notepad and Excel
    save it), plain or gzipped; any other text is refused."""
    found: set[str] = set()
    lines = TextLines(path)
    for number, line in enumerate(lines, 1):
        if lines.legacy:
            raise OptOutError(f"{path}:{number}: not UTF-8 or UTF-16 text")
        identifier = normalise(line)
        if not identifier or identifier.startswith("#"):
            continue
        if len(identifier) > MAX_IDENTIFIER:
            raise OptOutError(
                f"{path}:{number}: an identifier has at most {MAX_IDENTIFIER} characters"
            )
        if not identifier.isprintable():
            raise OptOutError(f"{path}:{number}: the identifier has a control character")
        found.add(identifier)
    return found


def load_optout(
    store: Store, path: Path, threshold: int, *, allow_empty: bool = False
) -> OptOutLoad:
    """Make the store's opt-out list exactly the file's, in one transaction (a re-load of the
    same file changes nothing); a bad line loads nothing, nor a file without identifiers
    (which would let everyone back in) unless `allow_empty`."""
    identifiers = read_identifiers(path)
    if not identifiers and not allow_empty:
        raise OptOutError(
            f"{path}: no identifiers, which would end every opt-out; give --allow-empty "
            "if that is meant"
        )
    with store.begin() as conn:
        schema.metadata.create_all(conn, tables=[schema.optout, schema.optout_key])
        key = _key(conn)
        if key is None:
            key = secrets.token_hex(32)
            conn.execute(insert(schema.optout_key).values(id=1, key=key))
        wanted = {_digest(key, i) for i in identifiers}
        held = set(conn.execute(select(schema.optout.c.identifier_hash)).scalars())
        removed, added = sorted(held - wanted), sorted(wanted - held)
        column = schema.optout.c.identifier_hash
        for start in range(0, len(removed), _BATCH):
            conn.execute(delete(schema.optout).where(column.in_(removed[start : start + _BATCH])))
        if added:
            conn.execute(insert(schema.optout), [{"identifier_hash": h} for h in added])
    with store.connect() as conn:
        excluded = len(opted_out(conn))
    return OptOutLoad(len(wanted), len(added), len(removed), suppress(excluded, threshold))


def opted_out(conn: Connection) -> frozenset[int]:
    """The person_ids of everyone in the store whose identifier is on the opt-out list."""
    translated = conn.get_execution_options().get("schema_translate_map", {}).get(None)
    if not inspect(conn).has_table(schema.optout_key.name, schema=translated):
        return frozenset()
    key = _key(conn)
    hashes = set(conn.execute(select(schema.optout.c.identifier_hash)).scalars())
    if key is None or not hashes:
        return frozenset()
    person = schema.person
    rows = conn.execute(select(person.c.person_id, person.c.person_source_value))
    return frozenset(
        pid for pid, value in rows if value and _digest(key, normalise(value)) in hashes
    )


def _key(conn: Connection) -> str | None:
    return conn.execute(select(schema.optout_key.c.key)).scalar_one_or_none()


def _digest(key: str, identifier: str) -> str:
    return hmac.new(key.encode(), identifier.encode(), hashlib.sha256).hexdigest()
