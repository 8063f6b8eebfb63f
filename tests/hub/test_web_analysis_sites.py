"""An analysis's page says which sites its combined result is made of and which it is not."""

import numpy as np

from flip.stats import describe
from tests.hub.test_web import person


def test_the_page_names_the_sites_left_out_of_the_combined_result(web):
    owner = person(web, "carla")
    tokens = {name: web.site(name) for name in ("an-a", "an-b", "an-c")}
    pid = web.call("POST", "/projects", owner.token, json={"name": "left out"}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": list(tokens)})
    spec = {"spec": {"kind": "table1"}}
    aid = web.call("POST", f"/projects/{pid}/analyses", owner.token, json=spec).json()["id"]
    for name in ("an-a", "an-b"):
        release = {"columns": {"age": describe.numeric_partial(np.arange(30.0), 10)}}
        body = {"round": 0, "release": release}
        assert (
            web.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body).status_code == 204
        )
    refused = {"round": 0, "refused": "not this <script>alert(1)</script> cohort"}
    assert (
        web.call("POST", f"/agent/analyses/{aid}", tokens["an-c"], json=refused).status_code == 204
    )
    shown = owner.http.get(f"/analyses/{aid}").text
    assert "Combined from an-a, an-b only" in shown
    assert "an-c (refused: not this &lt;script&gt;alert(1)&lt;/script&gt; cohort)" in shown
    assert "<script>alert" not in shown


def test_the_cox_table_names_the_sites_it_was_fitted_on():
    """A survival result's Cox table says which sites' rows it was fitted on (a site whose
    curve counts may still take no part in the model), with its rows and events."""
    from flip.hub.web.analyses import result_tables

    km = {"median": 40.0, "survival": [0.9, 0.5], "times": [30.0, 60.0]}
    result = {
        "km": {"combined": km, "sites": {"a": km, "b": km}},
        "logrank": {"p": 0.2},
        "cox": {
            "coef": {"age": 0.05},
            "se": {"age": 0.01},
            "p": {"age": 0.001},
            "n": 120,
            "events": ">=40",
            "sites": {"a": {"n": 120, "events": ">=40"}},
        },
    }
    titles = [t["title"] for t in result_tables("survival", result)]
    assert titles[0] == "Cox model (stratified by site; fitted on a; n 120, events >=40)"
