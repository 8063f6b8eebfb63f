"""Table 1 as rows of text: shared by the terminal table, the CSV file, the HTML page and
the hub's analysis page."""

from __future__ import annotations

from flip.stats.suppression import WITHHELD

#: The row that names the sites a column's combined statistics leave out.
LEFT_OUT = "sites left out of combined"


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
    if "counts" not in stats:  # too few values at the site: it released no level counts
        return WITHHELD
    count = stats["counts"].get(level, 0)
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
        if left := result.get("withheld", {}).get(column):
            marks = ["not released" if name in left else "" for name in sites]
            rows.append([column, LEFT_OUT, ", ".join(left), *marks])
        for pair, value in result["smd"].get(column, {}).items():
            rows.append([column, f"SMD {pair}", f"{value:.3f}", *[""] * len(sites)])
    return header, rows


def cox_title(cox: dict) -> str:
    """The Cox table's title: its strata, the sites whose rows it was fitted on, and its
    rows and events (a total is ">=N" where a site hid a small count)."""
    sites = ", ".join(cox.get("sites") or {}) or "none"
    return (
        f"Cox model (stratified by site; fitted on {sites}; "
        f"n {cox.get('n', '-')}, events {cox.get('events', '-')})"
    )


def not_combined_line(result: dict) -> str | None:
    """The sentence naming the sites a combined result leaves out and why, or None when it
    combines every site the analysis asked (the terminal and the hub's page print it)."""
    left = result.get("not_combined") or {}
    if not left:
        return None
    named = ", ".join(f"{site} ({why})" for site, why in left.items())
    combined = ", ".join(result.get("combined_from", []))
    if not combined:
        return f"Combined from no site; not combined: {named}."
    return f"Combined from {combined} only; not combined: {named}."
