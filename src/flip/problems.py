"""Problems in a file or a value, said in one line that names where they are: a pydantic
validation failure, text that is not UTF-8, JSON or YAML that does not parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

#: At most this many validation errors are named; the rest are counted.
SHOWN_PROBLEMS = 3


def one_line(text: str) -> str:
    """`text` as one line of plain text: each run of whitespace or other unprintable
    characters (a newline, a terminal escape, a bidi override) one space, trimmed."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def as_text(value: Any) -> Any:
    """`value` (JSON from the hub, or text from a file someone else wrote) with every
    character a terminal would act on in its strings and keys written out (`\\x1b`, `\\n`),
    for printing: a site names a level or gives a reason, and it must not drive the
    terminal. (The hub stores a site's free text as `one_line`.)"""
    if isinstance(value, str):
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)
    if isinstance(value, dict):
        return {as_text(k): as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    return value


def first_problem(exc: ValidationError) -> str:
    """Each validation error with where it is (`data.outcome: Input should be ...`), `; `-joined
    (the first few, then how many more); a key the model does not know is `unknown key`."""
    found = exc.errors()
    parts = []
    for problem in found[:SHOWN_PROBLEMS]:
        where = ".".join(str(part) for part in problem["loc"])
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        parts.append(f"{where}: {message}" if where else str(message))
    if len(found) > SHOWN_PROBLEMS:
        parts.append(f"and {len(found) - SHOWN_PROBLEMS} more")
    return "; ".join(parts)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file; ValueError `PATH: not UTF-8 text (...)` otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_json(path: Path) -> Any:
    """A UTF-8 JSON file's value; ValueError naming the file, line and column otherwise."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def read_yaml(path: Path) -> Any:
    """A UTF-8 YAML file's value; ValueError `PATH:LINE: not valid YAML: reason` otherwise."""
    import yaml

    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML: {reason}") from None
