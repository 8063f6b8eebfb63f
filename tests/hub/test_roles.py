"""Every hub endpoint x every role against a declared allow/deny matrix.

Projects are scoped: `researcher` and `stranger` (a viewer) are in no project, so every
route that names a project, query, run or model answers them 404, as if it did not exist;
`viewer` is a member of the project and reads it, but writes nothing.
"""

from flip.hub.app import create_app
from tests.hub.web_world import registered_model

HASH = "ab" * 32
PASSWORD = "correct horse battery"
READERS = {"admin", "owner", "member", "viewer"}
OWNERS = {"admin", "owner"}
WORKERS = OWNERS | {"member"}
USERS = READERS | {"researcher", "stranger", "site_admin"}
EVERYONE = USERS | {"site", "anonymous"}
ROLES = ("admin", "owner", "member", "researcher", "viewer", "stranger", "site_admin", "site")

#: (method, path) -> roles allowed past authentication and authorisation.
MATRIX = {
    ("POST", "/api/v1/users"): {"admin"},
    ("POST", "/api/v1/sites"): {"admin"},
    ("POST", "/api/v1/sites/enrol"): EVERYONE,
    ("POST", "/api/v1/login"): EVERYONE,
    ("POST", "/api/v1/logout"): USERS,
    ("GET", "/api/v1/sites/{site_id}/activity"): {"admin", "site_admin"},
    ("PUT", "/api/v1/users/{user_id}/password"): OWNERS,
    ("POST", "/api/v1/users/{user_id}/token"): OWNERS,
    ("DELETE", "/api/v1/users/{user_id}/token"): {"admin"},
    ("GET", "/api/v1/users/{user_id}/tokens"): OWNERS,
    ("POST", "/api/v1/users/{user_id}/tokens"): {"owner"},
    ("DELETE", "/api/v1/users/{user_id}/tokens/{token_id}"): OWNERS,
    ("POST", "/api/v1/users/{user_id}/restore"): {"admin"},
    ("POST", "/api/v1/sites/{site_id}/disable"): {"admin"},
    ("POST", "/api/v1/sites/{site_id}/enrolment"): {"admin"},
    ("DELETE", "/api/v1/sites/{site_id}/signing-key"): {"admin"},
    ("POST", "/api/v1/agent/credential"): {"site"},
    ("GET", "/api/v1/audit/verify"): {"admin"},
    ("POST", "/api/v1/projects"): WORKERS | {"researcher"},
    ("GET", "/api/v1/projects/{project_id}"): READERS,
    ("POST", "/api/v1/projects/{project_id}/members"): OWNERS,
    ("DELETE", "/api/v1/projects/{project_id}/members/{member_id}"): OWNERS,
    ("POST", "/api/v1/projects/{project_id}/sites"): WORKERS,
    ("POST", "/api/v1/projects/{project_id}/tasks"): WORKERS,
    ("POST", "/api/v1/projects/{project_id}/queries"): WORKERS,
    ("GET", "/api/v1/queries/{query_id}"): READERS,
    ("POST", "/api/v1/projects/{project_id}/runs"): WORKERS,
    ("GET", "/api/v1/runs/{run_id}"): READERS,
    ("GET", "/api/v1/runs/{run_id}/certificate"): READERS,
    ("GET", "/api/v1/projects"): READERS | {"researcher", "stranger"},
    ("GET", "/api/v1/projects/{project_id}/tasks"): READERS,
    ("GET", "/api/v1/projects/{project_id}/queries"): READERS,
    ("GET", "/api/v1/projects/{project_id}/runs"): READERS,
    ("POST", "/api/v1/runs/{run_id}/rounds"): WORKERS,
    ("POST", "/api/v1/runs/{run_id}/status"): WORKERS,
    ("POST", "/api/v1/projects/{project_id}/analyses"): WORKERS,
    ("GET", "/api/v1/projects/{project_id}/analyses"): READERS,
    ("GET", "/api/v1/analyses/{analysis_id}"): READERS,
    ("GET", "/api/v1/agent/analyses"): {"site"},
    ("POST", "/api/v1/agent/analyses/{analysis_id}"): {"site"},
    ("POST", "/api/v1/agent/quality"): {"site"},
    ("GET", "/api/v1/quality"): READERS | {"researcher", "stranger"},
    ("GET", "/api/v1/agent/work"): {"site"},
    ("POST", "/api/v1/agent/queries/{query_id}"): {"site"},
    ("POST", "/api/v1/agent/decisions"): {"site"},
    ("POST", "/api/v1/agent/runs/{run_id}"): {"site"},
    ("POST", "/api/v1/agent/runs/{run_id}/log"): {"site"},
    ("POST", "/api/v1/agent/node-key"): {"site"},
    ("POST", "/api/v1/agent/anchor"): {"site"},
    ("POST", "/api/v1/agent/hub-heads/check"): {"site"},
    ("POST", "/api/v1/agent/certificates/{run_id}"): {"site"},
    ("PUT", "/api/v1/users/{user_id}/role"): {"admin"},
    ("GET", "/api/v1/models"): READERS | {"researcher", "stranger"},
    ("GET", "/api/v1/models/{model_id}"): READERS,
    ("GET", "/api/v1/models/{model_id}/download"): READERS,
    ("GET", "/health"): EVERYONE,
}

BODIES = {
    "/api/v1/users": {"name": "someone", "role": "viewer"},
    "/api/v1/sites": {"name": "another"},
    "/api/v1/users/{user_id}/password": {
        "password": "a new long password",
        "current_password": PASSWORD,
    },
    "/api/v1/sites/enrol": {"enrolment_token": "not-a-real-token"},
    "/api/v1/projects": {"name": "p"},
    "/api/v1/projects/{project_id}/sites": {"sites": ["a"]},
    "/api/v1/projects/{project_id}/members": {"users": ["someone"]},
    "/api/v1/projects/{project_id}/tasks": {
        "hash": "cd" * 32,
        "kind": "tabular-logreg",
        "spec": {},
    },
    "/api/v1/projects/{project_id}/queries": {"name": "q", "definition": {}},
    "/api/v1/projects/{project_id}/runs": {"task_hash": HASH, "rounds": 1},
    "/api/v1/projects/{project_id}/analyses": {"spec": {"kind": "table1"}},
    "/api/v1/agent/analyses/{analysis_id}": {"round": 0, "refused": "no"},
    "/api/v1/agent/quality": {"report": {}},
    "/api/v1/runs/{run_id}/rounds": {"round": 1, "metrics": {"auroc": 0.5}},
    "/api/v1/runs/{run_id}/status": {"status": "cancelled"},
    "/api/v1/agent/queries/{query_id}": {"count": 0, "suppressed": False, "threshold": 10},
    "/api/v1/agent/decisions": {"project_id": 1, "task_hash": HASH, "decision": "approved"},
    "/api/v1/agent/runs/{run_id}": {"status": "refused"},
    "/api/v1/agent/runs/{run_id}/log": {"entries": []},
    "/api/v1/agent/node-key": {"public_key": "ecdsa-sha2-nistp384 " + "A" * 160},
    "/api/v1/agent/anchor": {"seq": 0, "hash": "0" * 64, "signature": "AAAA"},
    "/api/v1/agent/hub-heads/check": {"heads": []},
    "/api/v1/agent/certificates/{run_id}": {"signature": "AAAA"},
    "/api/v1/users/{user_id}/role": {"role": "viewer"},
    "/api/v1/users/{user_id}/tokens": {"name": "laptop"},
}


def world(hub, n: int, path: str):
    """Fresh callers and objects: `owner` owns a project with a task, a query and a run, and
    a registered model where `path` names one (registering is most of a world's cost)."""
    created = hub.call(
        "POST",
        "/users",
        hub.admin,
        json={"name": f"olive{n}", "role": "researcher", "password": PASSWORD},
    ).json()
    tokens = {
        "admin": hub.admin,
        "owner": created["token"],
        "member": hub.user(f"mia{n}", "researcher"),
        "researcher": hub.user(f"rita{n}", "researcher"),
        "viewer": hub.user(f"vic{n}", "viewer"),
        "stranger": hub.user(f"sid{n}", "viewer"),
        "site": hub.site(f"a{n}"),
        "anonymous": None,
    }
    other_site = hub.call("POST", "/sites", hub.admin, json={"name": f"b{n}"}).json()["id"]
    tokens["site_admin"] = hub.call(
        "POST", "/users", hub.admin, json={"name": f"sam{n}", "role": "site_admin", "site": f"b{n}"}
    ).json()["token"]
    owner = tokens["owner"]
    spare = hub.call("POST", f"/users/{created['id']}/tokens", owner, json={"name": "spare"})
    pid = hub.call("POST", "/projects", owner, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/members", owner, json={"users": [f"mia{n}", f"vic{n}"]})
    second = hub.call("POST", "/users", hub.admin, json={"name": f"mo{n}", "role": "researcher"})
    hub.call("POST", f"/projects/{pid}/members", owner, json={"users": [f"mo{n}"]})
    hub.call("POST", f"/projects/{pid}/sites", owner, json={"sites": [f"a{n}"]})
    hub.call("POST", f"/projects/{pid}/tasks", owner, json={"hash": HASH, "kind": "k", "spec": {}})
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", owner, json={"name": "q", "definition": {}}
    ).json()["id"]
    rid = hub.call(
        "POST", f"/projects/{pid}/runs", owner, json={"task_hash": HASH, "rounds": 1}
    ).json()["id"]
    aid = hub.call(
        "POST", f"/projects/{pid}/analyses", owner, json={"spec": {"kind": "table1"}}
    ).json()["id"]
    ids = {
        "analysis_id": aid,
        "project_id": pid,
        "query_id": qid,
        "run_id": rid,
        "user_id": created["id"],
        "token_id": spare.json()["id"],
        "site_id": other_site,
        "member_id": second.json()["id"],
    }
    if "{model_id}" in path:
        ids["model_id"] = registered_model(hub, pid)
    return tokens, ids


def test_every_route_is_in_the_matrix(tmp_path):
    paths = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}").openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == set(MATRIX)


def test_each_role_is_allowed_or_denied_as_declared(hub, tmp_path):
    hub.app.state.registry = tmp_path / "models"
    n = 0
    for (method, path), allowed in MATRIX.items():
        # A denied call changes nothing, so the roles denied share one world (one let through
        # fails the test there and then), as do all roles of a GET; each role allowed another
        # method gets its own world, as its call may change it.
        n += 1
        shared = (n, *world(hub, n, path))
        for role in (*ROLES, "anonymous"):
            if role in allowed and method != "GET":
                n += 1
                _check(hub, method, path, allowed, role, n, *world(hub, n, path))
            else:
                _check(hub, method, path, allowed, role, *shared)


def _check(hub, method: str, path: str, allowed: set, role: str, n: int, tokens, ids) -> None:
    """Call the route as `role` in world `n`; assert it is let through or denied as declared."""
    token = tokens[role]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = BODIES.get(path)
    if path == "/api/v1/projects/{project_id}/sites":
        body = {"sites": [f"a{n}"]}
    if path == "/api/v1/projects/{project_id}/members":
        body = {"users": [f"rita{n}"]}
    if path == "/api/v1/login":
        body = {"name": f"olive{n}", "password": PASSWORD}
    response = hub.http.request(method, path.format(**ids), headers=headers, json=body)
    hidden = _hidden(method, path, role)
    denied = response.status_code in (401, 403) or (hidden and response.status_code == 404)
    assert response.status_code < 500, (method, path, role, response.text)
    if hidden:
        assert response.status_code == 404, (method, path, role, response.status_code)
    if role in allowed:
        assert not denied or path == "/api/v1/sites/enrol", (method, path, role, response.text)
    else:
        assert denied, (method, path, role, response.status_code)


def _hidden(method: str, path: str, role: str) -> bool:
    """Whether the caller passes the route's role check but is in no project it names:
    then the project, query or run is hidden (404). A viewer's write is refused by role."""
    ids = ("{project_id}", "{query_id}", "{run_id}", "{model_id}", "{analysis_id}")
    scoped = not path.startswith("/api/v1/agent/") and any(i in path for i in ids)
    return scoped and (role == "researcher" or (role == "stranger" and method == "GET"))
