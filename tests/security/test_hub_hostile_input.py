"""Issue 19 items 1 and 8: hostile JSON gets 422 with a message, never a 500, on SQLite and
PostgreSQL hubs; a store already holding a NaN metric still serves the run."""

import itertools

import pytest
from sqlalchemy import insert

from flip.hub.db import run_rounds

HASH = "ab" * 32
CRITERION = {"table": "condition_occurrence", "concept_ids": [201826]}
JSON = {"content-type": "application/json"}


def _raw(hub, method, path, token, body: str):
    return hub.call(method, path, token, content=body.encode(), headers=JSON)


@pytest.fixture
def running(hub):
    """A researcher's project with one site and a running run: (researcher, project, run)."""
    researcher = hub.user("rita", "researcher")
    site = hub.site("st-a")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["st-a"]})
    task = {"hash": HASH, "kind": "tabular-logreg", "spec": {"name": "t"}}
    assert hub.call("POST", f"/projects/{pid}/tasks", researcher, json=task).status_code == 201
    run = hub.call(
        "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": HASH, "rounds": 3}
    )
    rid = run.json()["id"]
    hub.call(
        "POST",
        "/agent/decisions",
        site,
        json={"project_id": pid, "task_hash": HASH, "decision": "approved"},
    )
    assert (
        hub.call("POST", f"/agent/runs/{rid}", site, json={"status": "joined"}).status_code == 204
    )
    started = hub.call("POST", f"/runs/{rid}/status", researcher, json={"status": "running"})
    assert started.status_code == 200, started.text
    return researcher, pid, rid


def _refused(response, *words: str) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    for word in words:
        assert word in response.text, response.text


NON_FINITE = {
    '{"auc": NaN}': "not a finite number",
    '{"auc": Infinity}': "not a finite number",
    '{"auc": -1e400}': "not a finite number",
    '{"auc": "NaN"}': "finite number",
    '{"auc": "-inf"}': "finite number",
}


def test_a_nan_or_infinite_metric_is_refused(hub, running):
    researcher, _, rid = running
    for metrics, word in NON_FINITE.items():
        body = '{"round": 1, "metrics": ' + metrics + "}"
        _refused(_raw(hub, "POST", f"/runs/{rid}/rounds", researcher, body), word)
    assert hub.call("GET", f"/runs/{rid}", researcher).json()["round_metrics"] == []


def test_a_store_already_holding_a_nan_metric_still_serves_the_run(hub, running):
    researcher, _, rid = running
    with hub.app.state.engine.begin() as conn:
        conn.execute(
            insert(run_rounds),
            [
                {"run_id": rid, "round": 1, "metrics": '{"auc": NaN, "loss": 0.5}'},
                {"run_id": rid, "round": 2, "metrics": '{"auc": null, "loss": Infinity}'},
            ],
        )
    run = hub.call("GET", f"/runs/{rid}", researcher)
    assert run.status_code == 200, run.text
    assert run.json()["round_metrics"] == [{"auc": None, "loss": 0.5}, {"auc": None, "loss": None}]


BIG = str(2**70)
DEEP = "[" * 300 + "]" * 300


HOSTILE_QUERIES = [
    (
        '{"name": "q", "definition": {"name": "x", "include": [{"table": "measurement", '
        '"concept_ids": [' + BIG + "]}]}}",
        ("beyond 64 bits", "concept_ids"),
    ),
    ('{"name": "q", "definition": {"name": "x", "deep": ' + DEEP + "}}", ("nested deeper",)),
    ('{"name": "\\ud800", "definition": {}}', ("lone surrogate",)),
    ('{"name": "q\\u0000", "definition": {}}', ("NUL",)),
    ('{"name": "q", "definition": {"name": "\\udc00x"}}', ("lone surrogate",)),
    ('{"name": "q", "definition": {"k\\u0000": 1}}', ("NUL",)),
    ('{"name": "q", "definition": {"v": ' + "9" * 5000 + "}}", ("invalid JSON",)),
    ('{"name": "q", "definition": ' + "[" * 50000 + "]" * 50000 + "}", ("nested",)),
]


def test_hostile_json_in_a_query_is_refused_with_where_and_why(hub, running):
    researcher, pid, _ = running
    for body, words in HOSTILE_QUERIES:
        _refused(_raw(hub, "POST", f"/projects/{pid}/queries", researcher, body), *words)
    assert hub.call("GET", f"/projects/{pid}", researcher).status_code == 200


HOSTILE_SPECS = [
    ('{"name": "t", "seed": ' + BIG + "}", ('"seed"', "beyond 64 bits")),
    ('{"name": "t", "privacy": {"noise_multiplier": 1e300}}', ("noise_multiplier", "1e+300")),
    ('{"name": "t", "learning_rate": NaN}', ("learning_rate", "not a finite number")),
    ('{"name": "t", "data": ' + DEEP + "}", ("nested deeper",)),
    ('{"name": "t\\u0000"}', ("NUL",)),
]


def test_hostile_numbers_in_a_task_spec_are_refused(hub, running):
    researcher, pid, _ = running
    for spec, words in HOSTILE_SPECS:
        body = '{"hash": "' + "cd" * 32 + '", "kind": "tabular-logreg", "spec": ' + spec + "}"
        _refused(_raw(hub, "POST", f"/projects/{pid}/tasks", researcher, body), *words)


def test_a_query_with_too_many_criteria_is_refused_at_the_hub(hub, running):
    researcher, pid, _ = running
    many = {"name": "q", "definition": {"name": "x", "include": [CRITERION] * 1200}}
    _refused(hub.call("POST", f"/projects/{pid}/queries", researcher, json=many), "1200 criteria")
    split = {"include": [CRITERION] * 60, "exclude": [CRITERION] * 41}
    both = {"name": "q", "definition": {"name": "x", **split}}
    _refused(hub.call("POST", f"/projects/{pid}/queries", researcher, json=both), "101 criteria")
    concepts = {"name": "x", "include": [{"table": "measurement", "concept_ids": [1] * 5001}]}
    _refused(
        hub.call(
            "POST",
            f"/projects/{pid}/queries",
            researcher,
            json={"name": "q", "definition": concepts},
        ),
        "include.0.concept_ids",
    )
    ok = {"name": "q", "definition": {"name": "x", "include": [CRITERION] * 100}}
    assert hub.call("POST", f"/projects/{pid}/queries", researcher, json=ok).status_code == 201


HOSTILE = {
    "NaN": '{"x": NaN}',
    "big integer": '{"x": ' + BIG + "}",
    "deep": DEEP,
    "surrogate": '{"x": "\\ud800"}',
    "NUL": '{"x": "\\u0000"}',
}


def test_every_route_with_a_body_refuses_hostile_json(hub, running):
    """The sweep: every operation that takes a body, called with each hostile body, by the
    admin, gets 422 (a path parameter is 1)."""
    site = hub.site("st-b")
    operations = [
        (method.upper(), path.removeprefix("/api/v1").replace("{", "").replace("}", ""))
        for path, item in hub.app.openapi()["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(operations) > 15
    for (method, path), kind in itertools.product(operations, HOSTILE):
        concrete = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
        token = site if concrete.startswith("/agent") else hub.admin
        response = _raw(hub, method, concrete, token, HOSTILE[kind])
        assert response.status_code == 422, (kind, method, path, response.status_code)


def test_a_second_content_type_header_does_not_slip_hostile_json_past_the_guard(hub, running):
    """FastAPI reads the first Content-Type and the guard looked at the last: a JSON body
    sent with a second, non-JSON Content-Type reached the route, and a NaN or a lone
    surrogate in it made the validation error a 500."""
    researcher, pid, _ = running
    for kind, second in itertools.product(HOSTILE, ("text/plain", "application/octet-stream")):
        body = '{"hash": "' + "cd" * 32 + '", "kind": "tabular-logreg", "spec": ' + HOSTILE[kind]
        headers = [
            ("authorization", f"Bearer {researcher}"),
            ("content-type", "application/json"),
            ("content-type", second),
        ]
        response = hub.http.request(
            "POST", f"/api/v1/projects/{pid}/tasks", headers=headers, content=(body + "}").encode()
        )
        assert response.status_code == 422, (kind, second, response.status_code, response.text)
