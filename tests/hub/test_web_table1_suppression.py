"""A Table 1 analysis's page never shows a suppressed count as 0, nor a combined column that
leaves a site out as exact."""

from __future__ import annotations

from flip.hub.web.analyses import result_tables
from flip.stats.describe import categorical_partial
from flip.stats.federated import combine_round


def _rows(small_site: list[str]) -> dict[tuple[str, str], list[str]]:
    big = categorical_partial(["F"] * 30 + ["M"] * 25, 10)
    small = categorical_partial(small_site, 10)
    releases = {"big": {"columns": {"sex": big}}, "small": {"columns": {"sex": small}}}
    result = combine_round({"kind": "table1"}, {}, releases)["result"]
    (table,) = result_tables("table1", result)
    assert table["header"] == ["variable", "statistic", "combined", "big", "small"]
    return {(row[0], row[1]): row[2:] for row in table["rows"]}


def test_a_site_whose_column_is_withheld_shows_no_level_count_as_zero():
    """Site "small" released `n: "<10"` for sex (3 F, 2 M), so none of its level counts: the
    analysis page's Table 1 says each is withheld, never "0"."""
    rows = _rows(["F"] * 3 + ["M"] * 2)
    assert rows[("sex", "n")][2] == "<10"
    for level in ("= F", "= M"):
        shown = rows[("sex", level)][2]
        assert shown == "withheld", f"{level}: a withheld count shown as {shown!r}"


def test_the_combined_column_does_not_pass_off_the_released_sites_as_everyone():
    """The combined n and level counts leave the withheld site out, so they are lower bounds
    (">=56": the site holds at least one value), and a row names the site left out."""
    rows = _rows(["F"] * 3 + ["M"] * 2)
    combined_n = rows[("sex", "n")][0]
    assert combined_n == ">=56", f"combined n {combined_n} hides a site's persons"
    assert rows[("sex", "= F")][0] == ">=30"
    assert rows[("sex", "sites left out of combined")] == ["small", "", "not released"]
