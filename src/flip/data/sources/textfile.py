"""Open a text table file as exports write it: UTF-8 with or without a BOM, UTF-16 with its
BOM (Excel's "Unicode text"), or bytes of a Windows-1252/Latin-1 file (SQL Server and Excel
on Windows); plain or gzip-compressed (`person.csv.gz`). Universal line ends, as `csv` needs.

A byte that is not UTF-8 is read as Windows-1252 (Latin-1 where 1252 has no character);
`TextLines.legacy` counts the lines that held one, so a reader can warn about their rows.
"""

from __future__ import annotations

import codecs
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

_ERRORS = "flip-legacy-text"


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


class TextLines:
    """The lines of a text file, decoded as the module says, as `csv` reads them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.legacy = 0

    def __iter__(self) -> Iterator[str]:
        opener = gzip.open if self.path.name.lower().endswith(".gz") else open
        with opener(self.path, "rb") as raw:
            head = raw.read(2)
            raw.seek(0)
            if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                yield from io.TextIOWrapper(raw, encoding="utf-16", newline="")  # type: ignore[arg-type]
                return
            for number, line in enumerate(raw):
                if number == 0:
                    line = line.removeprefix(codecs.BOM_UTF8)
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    self.legacy += 1
                    text = line.decode("utf-8", errors=_ERRORS)
                if "\r" in text.rstrip("\r\n"):
                    yield from text.splitlines(keepends=True)  # classic Mac line ends
                else:
                    yield text
