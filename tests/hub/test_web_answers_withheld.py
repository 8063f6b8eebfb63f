"""The query page's totals and combined attrition never read as a count they are not: a
total withheld for a failed site says so, a step every site hid is not 0."""

from __future__ import annotations

import re

from tests.hub.test_web import person


def _asked(web, owner, name: str, sites: list[str], definition: dict) -> int:
    pid = web.call("POST", "/projects", owner.token, json={"name": name}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": sites})
    query = {"name": name, "definition": definition}
    return web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]


def test_a_total_withheld_for_a_site_error_does_not_blame_a_small_count(web):
    """Site e1 released 40, site e2 could not answer (error). The total is withheld, and the
    page says e2 failed, not that a count is below a threshold (none was suppressed)."""
    owner = person(web, "adv21-err-owner")
    first, second = web.site("adv21-e1"), web.site("adv21-e2")
    qid = _asked(web, owner, "adv21 errors", ["adv21-e1", "adv21-e2"], {})
    answer = {"count": 40, "suppressed": False, "threshold": 10}
    assert web.call("POST", f"/agent/queries/{qid}", first, json=answer).status_code < 300
    failed = {"count": None, "suppressed": False, "threshold": 10, "error": "store busy"}
    assert web.call("POST", f"/agent/queries/{qid}", second, json=failed).status_code < 300
    page = owner.http.get(f"/queries/{qid}").text
    total = re.search(r'id="total">(.*?)</td>', page, re.S).group(1)
    assert "40" not in total
    assert "below its threshold" not in total, total
    assert "adv21-e2 could not answer (failed)" in total, total


def test_a_combined_attrition_step_every_site_hid_is_not_shown_as_zero(web):
    """Both sites hid the last step as "<10": each holds at least one, so the combined
    column is "2+", never "0+" (which reads as a zero with a footnote)."""
    import json
    from pathlib import Path

    owner = person(web, "adv21-att-owner")
    first, second = web.site("adv21-a1"), web.site("adv21-a2")
    circe = Path(__file__).parents[1] / "data" / "circe" / "t2dm_older_high_sbp.json"
    qid = _asked(
        web, owner, "adv21 attrition", ["adv21-a1", "adv21-a2"], json.loads(circe.read_text())
    )
    for site in (first, second):
        body = {"count": None, "suppressed": True, "threshold": 10, "attrition": [120, 60, "<10"]}
        assert web.call("POST", f"/agent/queries/{qid}", site, json=body).status_code < 300, body
    page = owner.http.get(f"/queries/{qid}").text
    table = re.search(r'<table id="attrition">.*?</table>', page, re.S).group(0)
    last = re.findall(r"<tr><th scope=\"row\">.*?</tr>", table, re.S)[-1]
    combined = re.findall(r'<td class="num">(.*?)</td>', last)[-1]
    assert combined == "2+", f"combined last step shown as {combined!r}"
