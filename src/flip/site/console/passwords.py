"""The site console's sign-in: each site admin's argon2id password hash, in a 0600 file beside
the ledger. There is no default password: `flip site console set-password` makes the first."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from flip.private_files import write_private
from flip.site.approvals import by_person

#: The fewest characters of a console password (as the hub's).
MIN_LENGTH = 12
MAX_LENGTH = 256

_hasher = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)


def password_path(ledger: str | Path) -> Path:
    """Where the console passwords of the site whose ledger is `ledger` live."""
    return Path(ledger).with_suffix(".console-passwords")


def read(path: Path) -> dict[str, str]:
    """Each admin's name and password hash; none if the file is missing. ValueError naming
    the file if it does not read."""
    if not path.exists():
        return {}
    try:
        found = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a console password file ({exc})") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError(f"{path}: not a console password file (a name -> hash object)")
    return found


def set_password(path: Path, name: str, password: str) -> None:
    """Set (or replace) admin `name`'s password; ValueError if it is too short or too long."""
    if not name.strip() or len(name) > 100:
        raise ValueError("the admin's name must be 1 to 100 characters")
    if not by_person(name):
        raise ValueError(f"{name!r} is how the agent and its rules sign: name a person")
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValueError(f"a console password has {MIN_LENGTH} to {MAX_LENGTH} characters")
    users = read(path) | {name: _hasher.hash(password)}
    write_private(path, orjson.dumps(users, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))


def check(path: Path, name: str, password: str) -> str | None:
    """Admin `name`'s stored hash if `password` is theirs, else None (a hash is checked even
    for an unknown name, so the time taken does not tell which names exist)."""
    found = read(path).get(name)
    try:
        _hasher.verify(found or _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    return found


@cache
def _dummy() -> str:
    """A hash to check a password against when the name is unknown."""
    return _hasher.hash("no such console admin")
