"""The researcher's reads: their projects, a project's tasks, queries and runs, a model's folder."""

import io
import zipfile

HASH = "ab" * 32


def _project(hub, token: str, name: str) -> int:
    return hub.call("POST", "/projects", token, json={"name": name}).json()["id"]


def test_a_researcher_lists_only_the_projects_they_own_or_are_a_member_of(hub):
    rita, mia = hub.user("rita", "researcher"), hub.user("mia", "researcher")
    mine = _project(hub, rita, "diabetes outcomes")
    theirs = _project(hub, mia, "stroke")
    shared = _project(hub, mia, "shared sepsis")
    hub.call("POST", f"/projects/{shared}/members", mia, json={"users": ["rita"]})

    listed = hub.call("GET", "/projects", rita).json()
    assert [p["id"] for p in listed] == [shared, mine]
    assert listed[0]["owner"] == "mia" and listed[0]["sites"] == 0
    assert [p["id"] for p in hub.call("GET", "/projects", hub.admin).json()] == [
        shared,
        theirs,
        mine,
    ]
    found = hub.call("GET", "/projects", rita, params={"search": "DIABETES"}).json()
    assert [p["name"] for p in found] == ["diabetes outcomes"]
    assert hub.call("GET", f"/projects/{theirs}/tasks", rita).status_code == 404


def test_a_projects_tasks_queries_and_runs_are_listed_with_site_decisions(hub):
    rita = hub.user("rita", "researcher")
    hub.site("alpha")
    pid = _project(hub, rita, "p")
    hub.call("POST", f"/projects/{pid}/sites", rita, json={"sites": ["alpha"]})
    hub.call("POST", f"/projects/{pid}/tasks", rita, json={"hash": HASH, "kind": "k", "spec": {}})
    hub.call("POST", f"/projects/{pid}/queries", rita, json={"name": "q", "definition": {}})
    hub.call("POST", f"/projects/{pid}/runs", rita, json={"task_hash": HASH, "rounds": 2})

    [task] = hub.call("GET", f"/projects/{pid}/tasks", rita).json()
    assert task["hash"] == HASH and task["decisions"] == {"alpha": ["pending", ""]}
    [query] = hub.call("GET", f"/projects/{pid}/queries", rita).json()
    assert query["name"] == "q" and query["n"] is None
    [run] = hub.call("GET", f"/projects/{pid}/runs", rita).json()
    assert run["status"] == "requested" and run["rounds"] == 2 and run["hash"] == HASH


def _ended_run(hub, token: str, results: dict) -> int:
    """A simulation run ended `failed` with these results (its researcher reports them; a
    deployment run's come from the hub's federation only)."""
    pid = _project(hub, token, "p")
    hub.call("POST", f"/projects/{pid}/tasks", token, json={"hash": HASH, "kind": "k", "spec": {}})
    body = {"task_hash": HASH, "rounds": 1, "runtime": "simulation"}
    rid = hub.call("POST", f"/projects/{pid}/runs", token, json=body).json()["id"]
    status = {"status": "failed", "results": results}
    assert hub.call("POST", f"/runs/{rid}/status", token, json=status).status_code == 200
    return rid


def test_a_models_folder_downloads_as_a_zip_from_the_one_model_route(hub, tmp_path):
    rita = hub.user("rita", "researcher")
    pid = _project(hub, rita, "models")
    model = tmp_path / "models" / "project1-run1-0123456789ab"
    model.mkdir(parents=True)
    (model / "model.pt").write_bytes(b"weights")
    (model / "MODEL_CARD.md").write_text("# card")
    (model / "lineage.json").write_text(f'{{"id": "{model.name}", "project": {pid}}}')
    (model / "secret.txt").write_text("not a model file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pt").write_bytes(b"not in the registry")
    path = f"/models/{model.name}/download"

    assert hub.call("GET", path, rita, params={"format": "zip"}).status_code == 404  # no registry
    hub.app.state.registry = tmp_path / "models"
    try:
        response = hub.call("GET", path, rita, params={"format": "zip"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert sorted(names) == [
            f"{model.name}/MODEL_CARD.md",
            f"{model.name}/lineage.json",
            f"{model.name}/model.pt",
        ]
        sneaky = hub.call("GET", "/models/..%2Foutside/download", rita, params={"format": "zip"})
        assert sneaky.status_code == 404
        stranger = hub.user("sid", "researcher")
        assert hub.call("GET", path, stranger, params={"format": "zip"}).status_code == 404
        run = _ended_run(hub, rita, {"model": model.name})
        gone = hub.call("GET", f"/runs/{run}/model", rita)
        assert gone.status_code == 404, "one model download: /api/v1/models/{id}/download"
    finally:
        hub.app.state.registry = None
