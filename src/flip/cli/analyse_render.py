"""Table 1 as rows of text: shared by the terminal table, the CSV file and the HTML page."""

from __future__ import annotations

import csv
import html
from pathlib import Path


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"


def _cell(stats: dict, row: str, level: str | None) -> str:
    if row in ("n", "missing"):
        return str(stats[row])
    if row == "mean (sd)":
        return f"{_number(stats['mean'])} ({_number(stats['sd'])})"
    if row == "median [q1, q3]":
        return f"{_number(stats['median'])} [{_number(stats['q1'])}, {_number(stats['q3'])}]"
    count = stats.get("counts", {}).get(level, 0)
    if isinstance(count, int) and isinstance(stats["n"], int) and stats["n"]:
        return f"{count} ({100 * count / stats['n']:.1f}%)"
    return str(count)


def table1_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows of Table 1: a row per statistic or level, a column per site."""
    sites = list(result["sites"])
    header = ["variable", "statistic", "combined", *sites]
    rows = []
    for column, combined in result["combined"].items():
        if "counts" in combined:
            keys = [("n", None), ("missing", None)] + [
                (f"= {lvl}", lvl) for lvl in combined["counts"]
            ]
        else:
            keys = [("n", None), ("missing", None), ("mean (sd)", None), ("median [q1, q3]", None)]
        for label, level in keys:
            per_site = [s[column] for s in result["sites"].values()]
            cells = [_cell(s, label, level) for s in [combined, *per_site]]
            rows.append([column, label, *cells])
        for pair, value in result["smd"].get(column, {}).items():
            rows.append([column, f"SMD {pair}", f"{value:.3f}", *[""] * len(sites)])
    return header, rows


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
