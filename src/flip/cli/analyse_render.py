"""Table 1 as a CSV file and as a self-contained HTML page (rows from flip.stats.tables)."""

from __future__ import annotations

import csv
import html
from pathlib import Path

from flip.stats.tables import table1_rows


def write_csv(result: dict, path: Path) -> None:
    """Table 1 as a CSV file."""
    header, rows = table1_rows(result)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_html(result: dict, path: Path) -> None:
    """Table 1 as one self-contained HTML page (no scripts, no external files)."""
    header, rows = table1_rows(result)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    path.write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Table 1</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}</style></head><body>"
        f"<h1>Table 1</h1><p>Counts from 1 to {result['min_cell'] - 1} are suppressed at each "
        "site; a combined count marked &gt;= is a lower bound. SD uses n - 1; median and "
        "quartiles are from a mergeable sketch (relative error about 1%).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )
