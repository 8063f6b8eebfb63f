"""The hub's analysis API on SQLite and PostgreSQL: sites asked, rounds combined with
flip.stats, a refusal leaves the site out, a stale or foreign release is refused."""

import numpy as np

from flip.stats import describe, newton, regression, survival


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
    assert done["result"]["combined_from"] == ["a", "b"]
    assert done["result"]["not_combined"] == {"c": "refused: not today"}
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


def _backdate(hub, analysis_id: int, seconds: float) -> None:
    """Move the analysis's current round `seconds` into the past (as if time had passed)."""
    from datetime import timedelta

    from sqlalchemy import update

    from flip.hub.db import analyses, now

    with hub.app.state.engine.begin() as conn:
        conn.execute(
            update(analyses)
            .where(analyses.c.id == analysis_id)
            .values(updated_at=now() - timedelta(seconds=seconds))
        )


def test_a_round_past_its_timeout_goes_on_with_the_sites_that_answered(hub):
    researcher = hub.user("rita", "researcher")
    a, _ = hub.site("a"), hub.site("b")
    pid = _project(hub, researcher, "a", "b")
    spec = {"spec": {"kind": "table1"}, "timeout": 600}
    made = hub.call("POST", f"/projects/{pid}/analyses", researcher, json=spec).json()
    assert made["timeout"] == 600
    release = {"columns": {"age": describe.numeric_partial(np.arange(40.0), 10)}}
    hub.call("POST", f"/agent/analyses/{made['id']}", a, json={"round": 0, "release": release})
    _backdate(hub, made["id"], 599)
    assert hub.call("GET", f"/analyses/{made['id']}", researcher).json()["status"] == "running"
    _backdate(hub, made["id"], 601)
    done = hub.call("GET", f"/analyses/{made['id']}", researcher).json()
    assert done["status"] == "completed", done
    assert done["sites"] == {"a": "released round 0", "b": "silent: no answer within 600 s"}
    assert done["result"]["combined"]["age"]["n"] == 40
    assert done["result"]["combined_from"] == ["a"], "the combined result names its sites"
    assert done["result"]["not_combined"] == {"b": "silent: no answer within 600 s"}
    assert hub.call("GET", "/agent/analyses", a).json() == [], "the round is closed"
    default = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    )
    assert default.json()["timeout"] == 86400
    wrong = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={**spec, "timeout": 0})
    assert wrong.status_code == 422


def test_a_site_silent_in_a_newton_round_fails_the_model_with_its_name(hub):
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "regression", "family": "logistic", "covariates": ["x"]}
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec, "timeout": 60}
    ).json()["id"]
    rng = np.random.default_rng(2)
    for token in tokens.values():
        x = np.column_stack([np.ones(60), rng.normal(0, 1, 60)])
        y = (rng.random(60) < 0.5).astype(float)
        partial = regression.logistic_partial(x, y, [0.0, 0.0])
        release = {"withheld": False, "left_out": 0, "n": 60, "newton": partial}
        body = {"round": 0, "release": release}
        assert hub.call("POST", f"/agent/analyses/{aid}", token, json=body).status_code == 204
    partial = regression.logistic_partial(x, y, [0.1, 0.1])
    body = {"round": 1, "release": {"newton": partial}}
    assert hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=body).status_code == 204
    _backdate(hub, aid, 61)
    failed = hub.call("GET", f"/projects/{pid}/analyses", researcher).json()[0]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("b did not answer Newton round 1 within 60 s")
    assert failed["sites"]["b"] == "silent: no answer within 60 s"


def test_the_hub_closes_overdue_rounds_on_its_own(tmp_path):
    import time

    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from flip.hub.app import create_app
    from flip.hub.db import analyses
    from tests.hub.conftest import Hub

    hub = Hub.__new__(Hub)
    hub.app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", analysis_sweep=0.05)
    hub.http = TestClient(hub.app)
    from flip.hub.app import bootstrap_admin

    hub.admin = bootstrap_admin(hub.app.state.engine)
    with hub.http:
        researcher = hub.user("rita", "researcher")
        hub.site("a")
        pid = _project(hub, researcher, "a")
        body = {"spec": {"kind": "table1"}, "timeout": 10}
        aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json=body).json()["id"]
        _backdate(hub, aid, 11)
        for _ in range(100):
            with hub.app.state.engine.connect() as conn:
                found = conn.execute(select(analyses.c.status).where(analyses.c.id == aid))
                if found.scalar() != "running":
                    break
            time.sleep(0.05)
        with hub.app.state.engine.connect() as conn:
            row = conn.execute(select(analyses).where(analyses.c.id == aid)).one()
        assert row.status == "failed" and "no site released" in row.error


def test_results_are_read_by_the_projects_readers_only_and_each_read_is_audited(hub):
    from sqlalchemy import select

    from flip.hub.db import audit

    researcher = hub.user("rita", "researcher")
    outsider = hub.user("otto", "researcher")
    hub.site("a")
    pid = _project(hub, researcher, "a")
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    assert hub.call("GET", f"/analyses/{aid}", outsider).status_code == 404
    assert hub.call("GET", f"/projects/{pid}/analyses", outsider).status_code == 404
    assert hub.call("GET", f"/analyses/{aid}", researcher).status_code == 200
    assert hub.call("GET", f"/projects/{pid}/analyses", researcher).status_code == 200
    with hub.app.state.engine.connect() as conn:
        reads = conn.execute(
            select(audit.c.actor, audit.c.target).where(audit.c.action == "analysis.read")
        ).all()
    assert [(actor.split(":")[0], target) for actor, target in reads] == [
        ("user", f"analysis:{aid}")
    ] * 2


def test_huge_or_overflowing_specs_and_a_flood_of_running_analyses_are_refused(hub, monkeypatch):
    from flip.hub.routes import analyses as routes

    researcher = hub.user("rita", "researcher")
    hub.site("a")
    pid = _project(hub, researcher, "a")
    url = f"/projects/{pid}/analyses"
    huge = {"kind": "table1", "data": {"features": [{"name": "x" * 200}] * 1000}}
    refused = hub.call("POST", url, researcher, json={"spec": huge})
    assert refused.status_code == 422 and "spec" in refused.text
    overflowing = {"kind": "survival", "time_bin": 1e300}
    assert hub.call("POST", url, researcher, json={"spec": overflowing}).status_code == 422
    monkeypatch.setattr(routes, "MAX_RUNNING", 3)
    made = [hub.call("POST", url, researcher, json={"spec": {"kind": "table1"}}) for _ in range(4)]
    assert [m.status_code for m in made] == [201, 201, 201, 409]
    assert "3 analyses running" in made[-1].text


def test_a_site_not_asked_for_a_newton_round_cannot_slip_its_release_in(hub):
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "regression", "family": "logistic", "covariates": ["x"]}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(80), rng.normal(0, 1, 80)])
    y = (rng.random(80) < 0.4).astype(float)
    first = {"withheld": False, "left_out": 0, "n": 80}
    first["newton"] = regression.logistic_partial(x, y, [0.0, 0.0])
    sent = hub.call(
        "POST", f"/agent/analyses/{aid}", tokens["b"], json={"round": 0, "release": first}
    )
    assert sent.status_code == 204
    no = {"round": 0, "refused": "not this one"}
    assert hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=no).status_code == 204
    assert hub.call("GET", "/agent/analyses", tokens["a"]).json() == [], "a is not asked"
    forged = {"round": 1, "release": {"newton": regression.logistic_partial(x * 50, y, [0, 0])}}
    slipped = hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=forged)
    assert slipped.status_code == 409, slipped.text
    assert "not asked" in slipped.text


def test_a_malformed_release_is_left_out_with_its_reason_and_the_others_combine(hub):
    from sqlalchemy import select

    from flip.hub.db import audit

    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b", "c", "d")}
    pid = _project(hub, researcher, *tokens)
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    age = {"a": np.arange(40.0), "b": np.arange(30.0)}
    sent = {name: {"columns": {"age": describe.numeric_partial(v, 10)}} for name, v in age.items()}
    sent["c"] = {"rows": 12}
    sent["d"] = {"columns": {"weight": describe.numeric_partial(np.arange(20.0), 10)}}
    for name, release in sent.items():
        body = {"round": 0, "release": release}
        answered = hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body)
        assert answered.status_code == 204, answered.text
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed", done["error"]
    assert done["sites"]["a"] == done["sites"]["b"] == "released round 0"
    assert done["sites"]["c"] == "malformed release: the release has no 'columns'"
    assert done["sites"]["d"].startswith("malformed release: its columns differ")
    assert done["result"]["combined"]["age"]["n"] == 70
    assert done["result"]["combined_from"] == ["a", "b"]
    assert done["result"]["not_combined"] == {n: done["sites"][n] for n in ("c", "d")}
    assert sorted(done["result"]["sites"]) == ["a", "b"]
    with hub.app.state.engine.connect() as conn:
        left_out = conn.execute(
            select(audit.c.detail).where(audit.c.action == "analysis.malformed")
        ).scalars()
        assert sorted('"site":"c"' in d or '"site": "c"' in d for d in left_out) == [False, True]


def test_a_malformed_newton_partial_fails_the_model_naming_its_site(hub):
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "regression", "family": "logistic", "covariates": ["x"]}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    rng = np.random.default_rng(4)
    x = np.column_stack([np.ones(60), rng.normal(0, 1, 60)])
    y = (rng.random(60) < 0.5).astype(float)
    for token in tokens.values():
        release = {"withheld": False, "left_out": 0, "n": 60}
        release["newton"] = regression.logistic_partial(x, y, [0.0, 0.0])
        hub.call("POST", f"/agent/analyses/{aid}", token, json={"round": 0, "release": release})
    good = {"round": 1, "release": {"newton": regression.logistic_partial(x, y, [0.1, 0.1])}}
    bad = {"round": 1, "release": {"newton": {"loglik": -3.0, "gradient": [1.0], "hessian": []}}}
    hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=good)
    hub.call("POST", f"/agent/analyses/{aid}", tokens["b"], json=bad)
    failed = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert failed["status"] == "failed"
    assert (
        "malformed release in Newton round 1 (b: newton.gradient: not a list of 2)"
        in (failed["error"])
    )


def test_an_analysis_cohort_is_a_circe_cohort_within_the_query_rule_limit(hub):
    researcher = hub.user("rita", "researcher")
    hub.site("a")
    url = f"/projects/{_project(hub, researcher, 'a')}/analyses"
    expression = {"ConceptSets": [], "PrimaryCriteria": {"CriteriaList": [{"VisitOccurrence": {}}]}}
    rules = [{"name": f"r{i}", "expression": {"Type": "ALL"}} for i in range(100)]
    for cohort, status in [
        ({"name": "c", "expression": expression}, 201),
        ({"name": "c", "expression": expression | {"InclusionRules": rules}}, 422),
        (expression, 422),
        ([expression], 422),
    ]:
        spec = {"kind": "table1", "cohort": cohort}
        made = hub.call("POST", url, researcher, json={"spec": spec})
        assert made.status_code == status, (cohort, made.text)
        if status == 422:
            assert "cohort" in made.text or "InclusionRules" in made.text


def test_an_answer_that_both_releases_and_refuses_is_refused_and_never_combined(hub):
    """Otherwise its numbers would be combined while the result names the site as refused."""
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    age = {"a": np.arange(40.0), "b": np.arange(30.0)}
    release = {n: {"columns": {"age": describe.numeric_partial(v, 10)}} for n, v in age.items()}
    both = {"round": 0, "release": release["b"], "refused": "not this one"}
    sent = hub.call("POST", f"/agent/analyses/{aid}", tokens["b"], json=both)
    assert sent.status_code == 422 and "not both" in sent.text
    assert hub.call("GET", f"/analyses/{aid}", researcher).json()["sites"]["b"] == "waiting"
    for name in ("a", "b"):
        body = {"round": 0, "release": release[name]}
        assert (
            hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body).status_code == 204
        )
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["result"]["combined"]["age"]["n"] == 70
    assert done["result"]["combined_from"] == ["a", "b"] and done["result"]["not_combined"] == {}


def test_an_answer_after_the_rounds_timeout_is_refused_and_the_site_stays_silent(hub):
    """The round waits at most its timeout: an answer that comes later, before the hub's sweep
    or a read closed the round, is not combined."""
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    body = {"spec": {"kind": "table1"}, "timeout": 60}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json=body).json()["id"]
    age = {"a": np.arange(40.0), "b": np.arange(30.0)}
    release = {n: {"columns": {"age": describe.numeric_partial(v, 10)}} for n, v in age.items()}
    answer = {"round": 0, "release": release["a"]}
    assert hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=answer).status_code == 204
    _backdate(hub, aid, 61)
    late = hub.call(
        "POST", f"/agent/analyses/{aid}", tokens["b"], json={"round": 0, "release": release["b"]}
    )
    assert late.status_code == 409, late.text
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed"
    assert done["sites"]["b"] == "silent: no answer within 60 s"
    assert done["result"]["combined"]["age"]["n"] == 40
    assert done["result"]["combined_from"] == ["a"]


def test_a_refusal_is_one_line_of_text_and_cannot_pass_for_silence_or_a_malformed_release(hub):
    """A site's reason reaches a researcher's terminal and page: control characters (a
    terminal escape, a newline, a bidi override) become spaces, an empty one says so, and a
    reason that reads like the hub's own labels is still shown as the site's refusal."""
    researcher = hub.user("rita", "researcher")
    names = ("a", "b", "c", "d", "e")
    tokens = {name: hub.site(name) for name in names}
    pid = _project(hub, researcher, *names)
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    release = {"columns": {"age": describe.numeric_partial(np.arange(40.0), 10)}}
    answers = {
        "a": {"release": release},
        "b": {"refused": "silent: no answer within 5 s"},
        "c": {"refused": "malformed release: the hub's fault"},
        "d": {"refused": "bad\n\x1b[31mred\x1b[0m\t \u202eevil\r\x07 <b>x</b> "},
        "e": {"refused": " \n\t"},
    }
    for name, answer in answers.items():
        sent = hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json={"round": 0, **answer})
        assert sent.status_code == 204, sent.text
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed", done["error"]
    assert done["sites"] == {
        "a": "released round 0",
        "b": "refused: silent: no answer within 5 s",
        "c": "refused: malformed release: the hub's fault",
        "d": "refused: bad [31mred [0m evil <b>x</b>",
        "e": "refused: no reason given",
    }
    assert done["result"]["not_combined"] == {n: done["sites"][n] for n in "bcde"}


def test_a_malformed_releases_reason_is_one_line_whatever_keys_the_site_sent(hub):
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "harmonisation", "concept_ids": [1]}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    good = {"concepts": {"1": {"rows": 12, "sources": {"x|1": 12}}}, "tables": {}}
    bad = {"concepts": {}, "tables": {"t\n\x1b[31m": {"unmapped": 5}}}
    for name, release in (("a", good), ("b", bad)):
        body = {"round": 0, "release": release}
        assert (
            hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body).status_code == 204
        )
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed", done["error"]
    assert done["sites"]["b"] == "malformed release: table t [31m unmapped: not an object"


def _disable(hub, name: str) -> None:
    from sqlalchemy import select

    from flip.hub.db import sites

    with hub.app.state.engine.connect() as conn:
        site_id = conn.execute(select(sites.c.id).where(sites.c.name == name)).scalar_one()
    assert hub.call("POST", f"/sites/{site_id}/disable", hub.admin).status_code == 204


def test_a_disabled_site_is_not_waited_for_and_the_result_names_it_left_out(hub):
    """A disabled site can answer nothing: the first round goes on without it at once (not
    after a day's timeout), and a model it takes part in fails naming it."""
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b", "c")}
    pid = _project(hub, researcher, "a", "b", "c")
    _disable(hub, "c")
    url = f"/projects/{pid}/analyses"
    table1 = hub.call("POST", url, researcher, json={"spec": {"kind": "table1"}}).json()["id"]
    assert hub.call("GET", f"/analyses/{table1}", researcher).json()["sites"]["c"] == "disabled"
    release = {"columns": {"age": describe.numeric_partial(np.arange(40.0), 10)}}
    body = {"round": 0, "release": release}
    assert hub.call("POST", f"/agent/analyses/{table1}", tokens["a"], json=body).status_code == 204
    assert hub.call("GET", f"/analyses/{table1}", researcher).json()["status"] == "running"
    _disable(hub, "b")  # the last site the round waited for
    done = hub.call("GET", f"/analyses/{table1}", researcher).json()
    assert done["status"] == "completed", done["error"]
    assert done["sites"] == {"a": "released round 0", "b": "disabled", "c": "disabled"}
    assert done["result"]["combined_from"] == ["a"]
    assert done["result"]["not_combined"] == {"b": "disabled", "c": "disabled"}
    _disable(hub, "a")  # after the result: its part is still shown as it was
    assert hub.call("GET", f"/analyses/{table1}", researcher).json()["sites"] == done["sites"]

    spec = {"kind": "regression", "family": "logistic", "covariates": ["x"]}
    rng = np.random.default_rng(5)
    x = np.column_stack([np.ones(60), rng.normal(0, 1, 60)])
    y = (rng.random(60) < 0.5).astype(float)
    first = {"withheld": False, "left_out": 0, "n": 60}
    first["newton"] = regression.logistic_partial(x, y, [0.0, 0.0])
    tokens |= {"d": hub.site("d"), "e": hub.site("e")}
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["d", "e"]})
    model = hub.call("POST", url, researcher, json={"spec": spec}).json()["id"]
    for name in ("d", "e"):
        sent = hub.call(
            "POST", f"/agent/analyses/{model}", tokens[name], json={"round": 0, "release": first}
        )
        assert sent.status_code == 204, sent.text
    assert hub.call("GET", f"/analyses/{model}", researcher).json()["round"] == 1
    _disable(hub, "e")
    failed = hub.call("GET", f"/analyses/{model}", researcher).json()
    assert failed["status"] == "failed"
    assert "e was disabled in Newton round 1" in failed["error"]


def test_a_site_not_yet_enrolled_is_not_waited_for_and_is_named_not_combined(hub):
    """An invited site that has not enrolled can answer nothing: the round is combined once
    the enrolled sites answered, and the result names it left out, not enrolled."""
    hub.researcher = researcher = hub.user("rita", "researcher")
    tokens = {"a": hub.site("a")}
    assert hub.call("POST", "/sites", hub.admin, json={"name": "b"}).status_code == 201
    pid = _project(hub, researcher, "a", "b")
    url = f"/projects/{pid}/analyses"
    aid = hub.call("POST", url, researcher, json={"spec": {"kind": "table1"}}).json()["id"]
    shown = hub.call("GET", f"/analyses/{aid}", researcher).json()["sites"]
    assert shown == {"a": "waiting", "b": "not enrolled: asked nothing"}
    release = {"columns": {"age": describe.numeric_partial(np.arange(40.0), 10)}}
    done = _answer_all(hub, aid, tokens, {"a": release})
    assert done["status"] == "completed", done["error"]
    assert done["result"]["combined_from"] == ["a"]
    assert done["result"]["not_combined"] == {"b": "not enrolled: asked nothing"}


def test_a_site_that_joins_after_the_first_round_is_not_shown_waiting(hub):
    """A finished analysis (or a model past its first round) asks a newly invited site for
    nothing: it reads `not asked`, never `waiting`, and the result's sites stay as they were."""
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a")
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    release = {"columns": {"age": describe.numeric_partial(np.arange(40.0), 10)}}
    body = {"round": 0, "release": release}
    assert hub.call("POST", f"/agent/analyses/{aid}", tokens["a"], json=body).status_code == 204
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["b"]})
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert done["status"] == "completed"
    assert done["sites"] == {"a": "released round 0", "b": "not asked: joined after round 0"}
    assert done["result"]["combined_from"] == ["a"] and done["result"]["not_combined"] == {}
    assert hub.call("GET", "/agent/analyses", tokens["b"]).json() == []


def test_an_analysis_lists_its_sites_by_name_on_either_database(hub):
    researcher = hub.user("rita", "researcher")
    names = ("c-site", "b-site", "a-site")
    tokens = {name: hub.site(name) for name in names}
    pid = _project(hub, researcher, *names)
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    for name in names:
        body = {"round": 0, "refused": "no"} if name == "b-site" else {"round": 0}
        if name != "b-site":
            age = describe.numeric_partial(np.arange(40.0), 10)
            body["release"] = {"columns": {"age": age}}
        assert (
            hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body).status_code == 204
        )
    done = hub.call("GET", f"/analyses/{aid}", researcher).json()
    assert list(done["sites"]) == sorted(names)
    assert list(done["result"]["sites"]) == ["a-site", "c-site"]
    assert done["result"]["combined_from"] == ["a-site", "c-site"]


def _answer_all(hub, aid: int, tokens: dict, releases: dict) -> dict:
    for name, release in releases.items():
        body = {"round": 0, "release": release}
        sent = hub.call("POST", f"/agent/analyses/{aid}", tokens[name], json=body)
        assert sent.status_code == 204, sent.text
    return hub.call("GET", f"/analyses/{aid}", hub.researcher).json()


def test_a_site_that_withheld_its_part_is_not_named_among_the_sites_combined(hub):
    """A site with too few rows answers, but with nothing to combine (a regression's
    `withheld`, a survival curve with no bin): the result names it left out, with why, so a
    model fitted without it does not read as fitted on every site's rows."""
    hub.researcher = researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    url = f"/projects/{pid}/analyses"
    rng = np.random.default_rng(6)
    x = rng.normal(0, 1, (50, 1))
    y = 2 * x[:, 0] + rng.normal(0, 1, 50)
    spec = {"kind": "regression", "family": "linear", "covariates": ["x"]}
    aid = hub.call("POST", url, researcher, json={"spec": spec}).json()["id"]
    taking = {"withheld": False, "left_out": 0, "n": 50}
    taking["linear"] = regression.linear_partial(x, y)
    withheld = {"withheld": True, "left_out": "<10", "n": 0}
    done = _answer_all(hub, aid, tokens, {"a": taking, "b": withheld})
    assert done["status"] == "completed", done["error"]
    assert done["sites"]["b"] == "released round 0"
    assert done["result"]["combined_from"] == ["a"]
    assert done["result"]["not_combined"] == {
        "b": "withheld: too few complete rows or a small cell, so no part in the model"
    }

    km = survival.km_partial(rng.exponential(100, 60), np.ones(60), 30.0, 10)
    spec = {"kind": "survival", "time_bin": 30.0}
    aid = hub.call("POST", url, researcher, json={"spec": spec}).json()["id"]
    releases = {
        "a": {"km": km, "left_out": 0, "cox": None},
        "b": {"km": {"bins": [], "withheld": True}, "left_out": 0, "cox": None},
    }
    done = _answer_all(hub, aid, tokens, releases)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["combined_from"] == ["a"]
    assert done["result"]["not_combined"] == {
        "b": "withheld: too few events or censorings for one time bin"
    }


def test_a_table1_site_that_released_no_column_is_not_named_among_the_sites_combined(hub):
    """Site c has too few rows to release any column of Table 1: it answered, but nothing of
    it was combined, so the result names it left out; site b released one of two columns
    and is combined."""
    hub.researcher = researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b", "c")}
    pid = _project(hub, researcher, "a", "b", "c")
    spec = {"kind": "table1"}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    many, few = ["F"] * 30 + ["M"] * 25, ["F"] * 3 + ["M"] * 2
    releases = {
        "a": {"sex": many, "smoker": many},
        "b": {"sex": many, "smoker": few},
        "c": {"sex": few, "smoker": few},
    }
    columns = {
        name: {"columns": {c: describe.categorical_partial(v, 10) for c, v in cols.items()}}
        for name, cols in releases.items()
    }
    done = _answer_all(hub, aid, tokens, columns)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["withheld"] == {"sex": ["c"], "smoker": ["b", "c"]}
    assert done["result"]["combined_from"] == ["a", "b"]
    assert done["result"]["not_combined"] == {"c": "withheld: too few values to release any column"}


def test_a_result_with_no_site_combined_is_a_failure_not_a_combined_result(hub):
    """Every site withheld its curve (too few events): nothing was combined, so the analysis
    fails saying why rather than completing with an empty curve \"combined from\" no site."""
    from flip.stats.tables import not_combined_line

    hub.researcher = researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    spec = {"kind": "survival", "time_bin": 30.0}
    aid = hub.call("POST", f"/projects/{pid}/analyses", researcher, json={"spec": spec}).json()[
        "id"
    ]
    nothing = {"km": {"bins": [], "withheld": True}, "left_out": 0, "cox": None}
    done = _answer_all(hub, aid, tokens, {"a": nothing, "b": nothing})
    assert done["status"] == "failed" and done["result"] is None
    assert "no site's part could be combined" in done["error"]
    assert "a: withheld" in done["error"] and "b: withheld" in done["error"]
    line = not_combined_line({"combined_from": [], "not_combined": {"a": "refused: no"}})
    assert line == "Combined from no site; not combined: a (refused: no)."


def test_combined_from_one_site_shows_no_more_than_that_site_released(hub):
    """With the other site refusing, the combined Table 1 is one site's: its suppressed
    cells stay suppressed (a level under min-cell and the level that would give it away)."""
    hub.researcher = researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in ("a", "b")}
    pid = _project(hub, researcher, "a", "b")
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", researcher, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    smoker = describe.categorical_partial(["yes"] * 3 + ["no"] * 30, 10)
    assert smoker["counts"] == {"no": "<10", "yes": "<10"}, "the site's own suppression"
    refused = {"round": 0, "refused": "not this cohort"}
    assert hub.call("POST", f"/agent/analyses/{aid}", tokens["b"], json=refused).status_code == 204
    done = _answer_all(hub, aid, tokens, {"a": {"columns": {"smoker": smoker}}})
    assert done["result"]["combined_from"] == ["a"]
    counts = done["result"]["combined"]["smoker"]["counts"]
    assert not any(isinstance(v, int) for v in counts.values()), counts
    assert done["result"]["sites"]["a"]["smoker"]["counts"] == smoker["counts"]
