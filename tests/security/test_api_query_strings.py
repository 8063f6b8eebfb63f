"""An API call's query string holding what no store can keep (a NUL, a lone surrogate) is
refused with 422 naming the field, as a JSON body is: `?search=%00` was a 500 on PostgreSQL."""

import pytest


@pytest.mark.parametrize("search", ["%00", "a%00b", "%00%00"])
def test_a_nul_in_a_search_is_a_422_naming_the_field(hub, search):
    researcher = hub.user("rita", "researcher")
    hub.call("POST", "/projects", researcher, json={"name": "p"})
    response = hub.call("GET", f"/projects?search={search}", researcher)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "search"]


def test_a_nul_in_a_query_field_name_is_refused(hub):
    site = hub.site("s1")
    assert hub.call("GET", "/agent/work?x%00=1", site).status_code == 422


def test_ordinary_query_strings_still_work(hub):
    researcher = hub.user("rita", "researcher")
    hub.call("POST", "/projects", researcher, json={"name": "p q"})
    found = hub.call("GET", "/projects?search=p%20q", researcher)
    assert found.status_code == 200
    assert [p["name"] for p in found.json()] == ["p q"]
    # a lone surrogate's bytes decode as U+FFFD, which a store keeps: no match, no error
    assert hub.call("GET", "/projects?search=%ED%A0%80", researcher).json() == []
