"""Open a text table file as exports write it, the one decoder of every CSV-like reader:
UTF-8 with or without a BOM, UTF-16 with its BOM (Excel's "Unicode text") or without one
(SQL Server's `bcp -w`: known by the NUL bytes beside the header's first two characters),
or bytes of a Windows-1252/Latin-1 file (SQL Server and Excel on Windows); plain or
gzip-compressed (known by gzip's magic number, `person.csv.gz`). Universal line ends, as
`csv` needs: a file whose first 64 KiB end lines with CR alone (classic Mac) is read
line by line at each CR, bounded as any other.

A byte that is not UTF-8 is read as Windows-1252 (Latin-1 where 1252 has no character),
and bytes that are not UTF-16 (a lone surrogate, an odd last byte) as U+FFFD;
`TextLines.legacy` counts the lines that held one, so a reader can warn about their rows.
A gzip stream cut short or corrupt is a ValueError naming the file and the last line read.

No line is held in memory whole beyond `MAX_LINE` bytes (characters, for UTF-16), so one
huge line (a gzip bomb of a single line) cannot exhaust memory: by default it is a
`LineTooLong` error naming the file and line; a reader that quarantines per record passes
`skip_too_long=True`, and the line is then read past (as an empty line, so line numbers
still hold) and listed in `TextLines.too_long`, and the rest of the file goes on.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import BinaryIO, TextIO

#: The longest line a text file may hold, in bytes (characters for UTF-16): 64 MiB.
MAX_LINE = 64 * 1024 * 1024

#: How much of an over-long line is read at a time while reading past it.
_CHUNK = 1024 * 1024

_ERRORS = "flip-legacy-text"
#: The codec error handler that reads a byte that is not UTF-8 as Windows-1252.
LEGACY_ERRORS = _ERRORS


def _legacy(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    text = "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad)
    return text, error.end


codecs.register_error(_ERRORS, _legacy)


def is_table_file(path: Path) -> bool:
    """Whether a file name is a table file: .csv, .txt or .tsv, optionally gzipped."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in (".csv", ".txt", ".tsv")


def table_name(path: Path) -> str:
    """The table a file names: `PERSON.csv.gz` -> `person`."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return Path(name).stem.strip().lower()


#: Delimiters a table file may use, the most likely first.
DELIMITERS = (",", "\t", ";", "|")

_GZIP = b"\x1f\x8b"


def sniff_delimiter(header: str) -> str:
    """The delimiter that splits a header line into the most fields (a comma on a tie)."""
    return max(DELIMITERS, key=header.count)


class LineTooLong(ValueError):
    """A line of a text file is longer than `MAX_LINE`; the message names the file and line."""

    def __init__(self, path: Path, number: int, limit: int) -> None:
        self.path = path
        self.number = number
        super().__init__(f"{path}:{number}: the line is longer than {limit:,} bytes")


class TextLines:
    """The lines of a text file, decoded as the module says, as `csv` reads them.

    `encoding` (a codec name) reads every line in that encoding instead of UTF-8, a byte it
    has no character for as Latin-1; a byte order mark still wins. A file whose first bytes
    are gzip's magic number is decompressed, whatever its name. A line longer than
    `max_line` raises `LineTooLong`, or with `skip_too_long` reads as an empty line and its
    number joins `too_long` (drain it as you go: `take_too_long`).
    """

    def __init__(
        self,
        path: Path,
        encoding: str | None = None,
        *,
        skip_too_long: bool = False,
        max_line: int | None = None,
    ) -> None:
        self.path = path
        self.encoding = encoding
        self.legacy = 0
        self.skip_too_long = skip_too_long
        self.max_line = MAX_LINE if max_line is None else max_line
        self.too_long: list[int] = []
        self._number = 0

    def take_too_long(self) -> list[LineTooLong]:
        """The over-long lines read past since the last call, as errors naming file and line."""
        found = [LineTooLong(self.path, n, self.max_line) for n in self.too_long]
        self.too_long.clear()
        return found

    def __iter__(self) -> Iterator[str]:
        for _, text in self.raw_lines():
            yield text

    def raw_lines(self) -> Iterator[tuple[bytes, str]]:
        """(bytes as the file holds them, decompressed; text) per line (UTF-16 lines give
        their text as UTF-8 bytes)."""
        with self.path.open("rb") as plain:
            compressed = plain.read(2) == _GZIP
            plain.seek(0)
            with gzip.GzipFile(fileobj=plain) if compressed else nullcontext(plain) as raw:
                self._number = 0
                try:
                    yield from self._decode(raw)
                except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                    raise ValueError(
                        f"{self.path}: the gzip stream is cut short or corrupt after line "
                        f"{self._number}: {exc}"
                    ) from exc

    def _past(self, line: bytes | str, rest: Callable[[], bytes | str]) -> bool:
        """Count a line; True when it is over-long (then read past the rest of it, or raise)."""
        self._number += 1
        if len(line) <= self.max_line or line[-1:] in ("\n", b"\n"):
            return False
        if not self.skip_too_long:
            raise LineTooLong(self.path, self._number, self.max_line)
        while (more := rest()) and more[-1:] not in ("\n", b"\n"):
            pass
        self.too_long.append(self._number)
        return True

    def _decode(self, raw: BinaryIO) -> Iterator[tuple[bytes, str]]:
        """`raw_lines` of an open binary file."""
        head = raw.read(4)
        raw.seek(0)
        wide = self.encoding if self.encoding and self.encoding.startswith("utf-") else None
        if wide is None or not wide.startswith(("utf-16", "utf-32")):
            wide = _wide(head, self.encoding)
        if wide is not None:
            wrapper: TextIO = io.TextIOWrapper(raw, encoding=wide, errors="replace", newline="")
            rest = partial(wrapper.readline, _CHUNK)
            for text in iter(partial(wrapper.readline, self.max_line + 1), ""):
                if self._past(text, rest):
                    yield b"", "\n"
                    continue
                self.legacy += "\ufffd" in text
                yield text.encode(), text
            return
        encoding = self.encoding or "utf-8"
        if head[:3] == codecs.BOM_UTF8:
            encoding = "utf-8"
        sample = raw.read(_SAMPLE)
        raw.seek(0)
        source: BinaryIO | _CarriageReturns = raw
        if b"\r" in sample and b"\n" not in sample:
            source = _CarriageReturns(raw)
        bounded = iter(partial(source.readline, self.max_line + 1), b"")
        skip = partial(source.readline, _CHUNK)
        for number, line in enumerate(bounded):
            if self._past(line, skip):
                yield b"", "\n"
                continue
            if number == 0:
                line = line.removeprefix(codecs.BOM_UTF8)
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError:
                self.legacy += 1
                text = line.decode(encoding, errors=_ERRORS)
            if "\r" in text.rstrip("\r\n"):  # classic Mac line ends
                for piece in text.splitlines(keepends=True):
                    yield piece.encode(encoding, errors="replace"), piece
            else:
                yield line, text


#: How much of a file's start tells whether it ends lines with CR alone (classic Mac).
_SAMPLE = 64 * 1024


class _CarriageReturns:
    """A binary file whose lines end with CR alone (classic Mac), read as lines ending
    with LF, `readline(limit)` bounded as a file's is."""

    def __init__(self, raw: BinaryIO) -> None:
        self._text = io.TextIOWrapper(raw, encoding="latin-1", newline="\r")

    def readline(self, limit: int = -1) -> bytes:
        """The next line (at most `limit` bytes), its CR written as LF."""
        line = self._text.readline(limit).encode("latin-1")
        return line[:-1] + b"\n" if line.endswith(b"\r") else line


def _wide(head: bytes, encoding: str | None) -> str | None:
    """The UTF-16 codec of a file by its first bytes (a BOM, or NUL beside each of the first
    two characters when no other encoding is configured), else None."""
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    if encoding is not None or len(head) < 4:
        return None
    if head[1] == head[3] == 0 and head[0] and head[2]:
        return "utf-16-le"
    if head[0] == head[2] == 0 and head[1] and head[3]:
        return "utf-16-be"
    return None


def utf16_codec(head: bytes) -> str | None:
    """The UTF-16 codec of a file whose first four bytes are `head` (see `_wide`), or None."""
    return _wide(head, None)


def first_line(path: Path, encoding: str | None = None) -> str:
    """The first line of a text file (its header), decoded as `TextLines` decodes it."""
    return next(iter(TextLines(path, encoding)), "")
