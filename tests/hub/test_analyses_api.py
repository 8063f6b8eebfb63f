"""The hub's analysis API on SQLite and PostgreSQL: sites asked, rounds combined with
flip.stats, a refusal leaves the site out, a stale or foreign release is refused."""

import numpy as np

from flip.stats import describe, newton, regression


def _project(hub, researcher: str, *names: str) -> int:
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": list(names)})
    return pid


def test_a_round_is_combined_once_every_site_answered_and_a_refusal_leaves_a_site_out(hub):
    researcher = hub.user("rita", "researcher")
    a, b, c = hub.site("a"), hub.site("b"), hub.site("c")
    outsider = hub.site("d")
    pid = _project(hub, researcher, "a", "b", "c")
    made = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    )
    assert made.status_code == 201, made.text
    aid = made.json()["id"]
    assert [w["id"] for w in hub.call("GET", "/agent/analyses", a).json()] == [aid]
    assert hub.call("GET", "/agent/analyses", outsider).json() == []
    rng = np.random.default_rng(0)
    values = {"a": rng.normal(50, 10, 40), "b": rng.normal(60, 5, 30)}
    for name, token in (("a", a), ("b", b)):
        release = {"columns": {"age": describe.numeric_partial(values[name], 10)}}
        sent = hub.call(
            "POST", f"/agent/analyses/{aid}", token, json={"round": 0, "release": release}
        )
        assert sent.status_code == 204, sent.text
    assert hub.call("GET", f"/analyses/{aid}", researcher).json()["status"] == "running"
    refused = {"round": 0, "refused": "not today"}
    assert hub.call("POST", f"/agent/analyses/{aid}", c, json=refused).status_code == 204
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed"
    assert done["sites"] == {
        "a": "released round 0",
        "b": "released round 0",
        "c": "refused: not today",
    }
    pooled = np.concatenate(list(values.values()))
    assert done["result"]["combined"]["age"]["n"] == 70
    assert abs(done["result"]["combined"]["age"]["mean"] - pooled.mean()) < 1e-9
    again = hub.call("POST", f"/agent/analyses/{aid}", a, json={"round": 0, "refused": "x"})
    assert again.status_code == 409, "a completed analysis takes no more answers"
    foreign = hub.call("POST", f"/agent/analyses/{aid}", outsider, json=refused)
    assert foreign.status_code == 404


def test_a_logistic_model_asks_the_sites_that_took_part_round_after_round(hub):
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "regression", "family": "logistic", "covariates": ["x"]}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    rng = np.random.default_rng(1)
    data = {}
    for name in tokens:
        x = np.column_stack([np.ones(60), rng.normal(0, 1, 60)])
        y = (rng.random(60) < 1 / (1 + np.exp(-(0.3 + 0.8 * x[:, 1])))).astype(float)
        data[name] = (x, y)
    for _ in range(40):
        asked = {n: hub.call("GET", "/agent/analyses", t).json() for n, t in tokens.items()}
        if not any(asked.values()):
            break
        for name, items in asked.items():
            for item in items:
                x, y = data[name]
                beta = item["proposal"] or [0.0, 0.0]
                partial = regression.logistic_partial(x, y, beta)
                release = (
                    {"withheld": False, "left_out": 0, "n": 60, "newton": partial}
                    if item["round"] == 0
                    else {"newton": partial}
                )
                body = {"round": item["round"], "release": release}
                sent = hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body)
                assert sent.status_code == 204, sent.text
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed", done["error"]
    x = np.vstack([d[0] for d in data.values()])
    y = np.concatenate([d[1] for d in data.values()])
    pooled = newton.fit([lambda b: regression.logistic_partial(x, y, b)], 2)["beta"]
    got = [done["result"]["coef"]["intercept"], done["result"]["coef"]["x"]]
    assert np.allclose(got, pooled, rtol=1e-6)
