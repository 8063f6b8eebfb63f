"""A site's own CSV file as a modelling table: column kinds, missing values, binary target.

Real-world files mix numbers, booleans (TRUE/FALSE, yes/no, 1/0), string
categories and missing values ("", NA, ?, …). Nothing here leaves the site: the
federated preprocessing sees only `ColumnStats` (sums, counts, category counts).
"""

from __future__ import annotations

import csv
import math
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from flip.data.sources.textfile import TextLines, sniff_delimiter

MISSING = {"", "na", "n/a", "nan", "null", "none", "?", ".", "-", "missing"}
TRUE = {"true", "t", "yes", "y"}
FALSE = {"false", "f", "no", "n"}
_OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}


class DatasetError(ValueError):
    """A file or option cannot make a dataset; the message says which and why."""


def is_missing(value: str) -> bool:
    """Whether a cell counts as missing."""
    return value.strip().lower() in MISSING


def as_number(value: str) -> float | None:
    """The cell as a number (booleans as 1/0), or None when missing or not a number."""
    text = value.strip().lower()
    if text in MISSING:
        return None
    if text in TRUE:
        return 1.0
    if text in FALSE:
        return 0.0
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class SiteTable:
    """One site's rows as strings, by column."""

    name: str
    columns: dict[str, list[str]]

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()), []))

    @classmethod
    def read(cls, name: str, path: Path) -> SiteTable:
        """Read a CSV file (comma, semicolon, tab or pipe), decoded as every FLIP source
        decodes text files (`sources.textfile`: UTF-8, UTF-16, Windows-1252, gzip)."""
        try:
            lines = list(TextLines(path))
        except OSError as exc:
            raise DatasetError(f"site {name}: cannot read {path}: {exc.strerror or exc}") from None
        if len(lines) < 2:
            raise DatasetError(f"site {name}: {path} has no data rows")
        rows = list(csv.reader(lines, delimiter=sniff_delimiter(lines[0])))
        header = [h.strip() for h in rows[0]]
        if repeated := sorted(h for h, k in Counter(header).items() if k > 1):
            raise DatasetError(f"site {name}: {path} has column {repeated[0]!r} more than once")
        body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
        for number, r in enumerate(body, start=2):
            if len(r) != len(header):
                raise DatasetError(
                    f"site {name}: {path} line {number} has {len(r)} fields, not {len(header)}"
                )
        return cls(name, {h: [r[i] for r in body] for i, h in enumerate(header)})


@dataclass(frozen=True)
class Target:
    """Which rows are positive: `column OP value`, or `column == value` for a bare value."""

    column: str
    op: str
    value: str

    @classmethod
    def parse(cls, target: str, positive: str | None) -> Target:
        """From --target and --positive ("num>0", ">0", "yes", or None for a 2-valued target)."""
        if positive is None:
            return cls(target, "auto", "")
        match = re.fullmatch(r"\s*([A-Za-z_][\w. ]*?)?\s*(>=|<=|==|!=|=|>|<)\s*(.+?)\s*", positive)
        if match is None:
            return cls(target, "==", positive.strip())
        column, op, value = match.groups()
        return cls((column or target).strip(), op, value.strip().strip("'\""))

    def labels(self, values: list[str], site: str) -> list[float | None]:
        """1.0/0.0 per row, None where the target is missing."""
        if self.op == "auto":
            return _two_valued(values, self.column, site)
        threshold = as_number(self.value)
        out: list[float | None] = []
        for v in values:
            if is_missing(v):
                out.append(None)
                continue
            number = as_number(v)
            if threshold is not None and number is not None:
                out.append(float(_OPS[self.op](number, threshold)))
            elif self.op in ("==", "=", "!="):
                equal = v.strip().lower() == self.value.lower()
                out.append(float(equal if self.op != "!=" else not equal))
            else:
                raise DatasetError(
                    f"site {site}: target {v!r} cannot be compared: {self.op} {self.value}"
                )
        return out


def _two_valued(values: list[str], column: str, site: str) -> list[float | None]:
    present = sorted({v.strip().lower() for v in values if not is_missing(v)})
    if len(present) != 2:
        raise DatasetError(
            f"site {site}: target {column} has {len(present)} values; say which are positive with "
            f'--positive (e.g. "{column}>0")'
        )
    positive = next((p for p in present if p in TRUE or as_number(p) == 1.0), present[1])
    return [None if is_missing(v) else float(v.strip().lower() == positive) for v in values]


@dataclass
class ColumnStats:
    """What one site shares about one column: sums and counts, or category counts."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    missing: int = 0
    categories: Counter[str] = field(default_factory=Counter)

    def merge(self, other: ColumnStats) -> ColumnStats:
        """The statistics of both sites together."""
        return ColumnStats(
            self.count + other.count,
            self.total + other.total,
            self.squares + other.squares,
            self.missing + other.missing,
            self.categories + other.categories,
        )


def column_kind(values: list[str]) -> str:
    """numeric (numbers and booleans) or categorical."""
    present = [v for v in values if not is_missing(v)]
    if present and all(as_number(v) is not None for v in present):
        return "numeric"
    return "categorical"


def looks_like_id(name: str, values: list[str]) -> bool:
    """A column that identifies rows: unique per row and named like an id, or unique text."""
    present = [v.strip() for v in values if not is_missing(v)]
    if len(present) < 10 or len(set(present)) != len(present):
        return False
    named = re.search(r"(^|_|\b)(id|identifier|mrn|key|uuid)$", name.strip().lower()) is not None
    return named or column_kind(present) == "categorical"


def site_stats(table: SiteTable, rows: list[int], kinds: dict[str, str]) -> dict[str, ColumnStats]:
    """A site's statistics over its training rows, one entry per feature column."""
    out: dict[str, ColumnStats] = {}
    for column, kind in kinds.items():
        stats = ColumnStats()
        for i in rows:
            value = table.columns[column][i]
            if is_missing(value):
                stats.missing += 1
            elif kind == "numeric":
                number = as_number(value)
                stats.count += 1
                stats.total += number
                stats.squares += number * number
            else:
                stats.categories[value.strip()] += 1
        out[column] = stats
    return out
