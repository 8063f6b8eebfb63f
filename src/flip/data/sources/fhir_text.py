"""FHIR JSON files as Windows tools write them: UTF-16 (PowerShell's `Out-File`, Notepad's
"Unicode"), or lines holding Windows-1252 bytes (a name typed on a legacy system).

FHIR requires UTF-8; a file in UTF-16 (known by its BOM, or NUL beside each of its first
two characters) is read as the text it is. A line that is no JSON in UTF-8 and holds bytes
that are not UTF-8 is read as Windows-1252 (as the CSV readers do, `textfile`), and its
records carry the warning `json.text_not_utf8`; only then, so UTF-8 costs nothing more.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from typing import Any, BinaryIO

import orjson

from flip.data.sources import textfile

#: The warning of records read from a line that was not UTF-8.
NOT_UTF8 = "json.text_not_utf8"


def wide_codec(handle: BinaryIO) -> str | None:
    """The UTF-16 codec of an open file by its first bytes (the handle is left at its start
    when it can seek back, as plain and gzip files can), else None."""
    head = handle.read(4)
    handle.seek(0)
    return textfile.utf16_codec(head)


def wide_lines(handle: BinaryIO, codec: str) -> Iterator[bytes | None]:
    """The lines of a UTF-16 file as UTF-8 bytes, None for one longer than
    textfile.MAX_LINE characters (read past, never held whole)."""
    text = io.TextIOWrapper(handle, encoding=codec, errors="replace", newline="")
    limit = textfile.MAX_LINE
    for line in iter(partial(text.readline, limit + 1), ""):
        if len(line) <= limit or line.endswith("\n"):
            yield line.encode()
            continue
        while (more := text.readline(1024 * 1024)) and not more.endswith("\n"):
            pass
        yield None


def legacy_json(raw: bytes) -> Any | None:
    """The JSON a line holds when read as Windows-1252, if it is not UTF-8 and then parses;
    else None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors=textfile.LEGACY_ERRORS)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
    return None
