"""The hub web app's task, model and admin pages: each does what the API would, under the
same rules, audited."""

import hashlib
import io
import re
import time

import onnx
import orjson
import torch
from sqlalchemy import select

from flip.fl.tasks.base import TaskSpec, task_hash
from flip.fl.tasks.catalog import mace_task
from flip.hub import access_requests as requests_store
from flip.hub.db import audit, tasks, users
from flip.hub.web import banner
from tests.hub.conftest import Hub
from tests.hub.test_web import PASSWORD, person
from tests.hub.web_client import Browser
from tests.hub.web_world import PER_SITE, registered_model, registry_at, request_id

CUSTOM_CODE = """
import torch


def new_model(n_features, seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_features, 1)
"""


def _actions(hub: Hub, action: str) -> list[tuple[str, str, str]]:
    with hub.app.state.engine.connect() as conn:
        rows = conn.execute(
            select(audit.c.actor, audit.c.target, audit.c.detail).where(audit.c.action == action)
        )
        return [tuple(r) for r in rows]


def _project(web: Hub, owner: Browser, name: str) -> int:
    made = owner.post("/projects", {"name": name}, page="/projects")
    return int(made.headers["location"].rsplit("/", 1)[1])


def test_a_built_in_task_is_reviewed_with_its_hash_and_proposed_as_sites_hash_it(web):
    owner = person(web, "tina")
    pid = _project(web, owner, "catalog")
    catalog = owner.http.get(f"/projects/{pid}/tasks/new")
    assert catalog.status_code == 200 and "mace-5y-multimodal" in catalog.text
    expected = task_hash(mace_task(0))
    review = owner.http.get(f"/projects/{pid}/tasks/review?builtin=mace-5y")
    assert review.status_code == 200
    assert re.search(r'id="task-hash">([0-9a-f]{64})<', review.text)[1] == expected
    assert "def new_model" in review.text, "the code the hash covers is shown"
    spec = re.search(r'name="spec" value="([^"]+)"', review.text)[1].replace("&#34;", '"')

    forged = owner.post(
        f"/projects/{pid}/tasks",
        {"spec": spec, "task_hash": "0" * 64},
        page=f"/projects/{pid}/tasks/new",
    )
    assert forged.status_code == 409 and "review it again" in forged.text
    proposed = owner.post(
        f"/projects/{pid}/tasks", {"spec": spec, "task_hash": expected}, page=f"/projects/{pid}"
    )
    assert proposed.status_code == 303, proposed.text
    with web.app.state.engine.connect() as conn:
        row = conn.execute(
            select(tasks.c.hash, tasks.c.spec).where(tasks.c.project_id == pid)
        ).one()
    assert row.hash == expected
    assert task_hash(TaskSpec.model_validate_json(row.spec)) == expected, (
        "a site gets the same hash"
    )
    unknown = owner.http.get(f"/projects/{pid}/tasks/review?builtin=no-such-task")
    assert unknown.status_code == 422 and "mace-5y" in unknown.text


def test_an_uploaded_custom_package_shows_its_code_and_privacy_before_it_is_proposed(web):
    owner = person(web, "uma")
    pid = _project(web, owner, "custom")
    base = mace_task(3).model_dump(mode="json")
    privacy = {"noise_multiplier": 1.1, "clipping_norm": 1.0, "delta": 1e-5}
    package = base | {"kind": "custom", "code": CUSTOM_CODE, "rounds": 4, "privacy": privacy}
    spec = TaskSpec.model_validate(package)
    body = orjson.dumps(spec.model_dump(mode="json"))
    review = owner.post(
        f"/projects/{pid}/tasks/review",
        page=f"/projects/{pid}/tasks/new",
        files={"package": ("task.json", body, "application/json")},
    )
    assert review.status_code == 200, review.text
    assert task_hash(spec) in review.text
    assert (
        "torch.nn.Linear(n_features, 1)" in review.text and "the task&#39;s own code" in review.text
    )
    assert ">4 (the privacy budget" in review.text
    assert 'id="task-privacy"' in review.text and "1.1" in review.text

    broken = owner.post(
        f"/projects/{pid}/tasks/review",
        page=f"/projects/{pid}/tasks/new",
        files={"package": ("task.json", b'{"kind": "custom", "name": "x"}', "application/json")},
    )
    assert broken.status_code == 422 and "data" in broken.text
    huge = owner.post(
        f"/projects/{pid}/tasks/review",
        page=f"/projects/{pid}/tasks/new",
        files={"package": ("task.json", b" " * (600 * 1024), "application/json")},
    )
    assert huge.status_code in (413, 422)


def test_a_personalised_package_shows_its_personalisation_and_a_bad_one_is_refused(web):
    owner = person(web, "pia")
    pid = _project(web, owner, "personal-review")
    base = mace_task(3).model_dump(mode="json")
    spec = TaskSpec.model_validate(base | {"personal": "ditto", "ditto_lambda": 0.25})

    def review(package: dict) -> object:
        body = orjson.dumps(package)
        return owner.post(
            f"/projects/{pid}/tasks/review",
            page=f"/projects/{pid}/tasks/new",
            files={"package": ("task.json", body, "application/json")},
        )

    shown = review(spec.model_dump(mode="json"))
    assert shown.status_code == 200, shown.text
    assert task_hash(spec) in shown.text and task_hash(spec) != task_hash(mace_task(3))
    assert 'id="task-personal">ditto<' in shown.text and "lambda 0.25" in shown.text
    assert "flip.fl.personal" in shown.text, "the code that keeps each site's part is shown"
    assert "after_round" in shown.text, "with the ClientApp's use of it (hashed too)"
    for bad, says in (
        ({"personal": "fedxx"}, "personal"),
        ({"personal": "ditto", "ditto_lambda": -1}, "ditto_lambda"),
        ({"personal": "ditto"}, "ditto needs it"),
    ):
        refused = review(base | bad)
        assert refused.status_code == 422 and says in refused.text


def test_models_pages_show_a_projects_model_to_its_readers_and_downloads_are_audited(web, tmp_path):
    with registry_at(web, tmp_path / "models"):
        _models_pages(web)


def _models_pages(web):
    owner, outsider = person(web, "mona"), person(web, "otto")
    pid = _project(web, owner, "models")
    model_id = registered_model(web, pid)

    listed = owner.http.get("/models")
    assert listed.status_code == 200 and model_id in listed.text and "north" in listed.text
    assert model_id not in outsider.http.get("/models").text
    assert outsider.http.get(f"/models/{model_id}").status_code == 404
    assert outsider.http.get(f"/models/{model_id}/download?format=torch").status_code == 404
    assert web.call("GET", "/models", outsider.token).json() == []

    card = owner.http.get(f"/models/{model_id}")
    assert card.status_code == 200 and 'id="model-card"' in card.text
    assert "0.78" in card.text and "120" in card.text, "metrics and rows by site"

    weights = owner.http.get(f"/models/{model_id}/download?format=torch")
    assert weights.status_code == 200
    state = torch.load(io.BytesIO(weights.content), weights_only=True)
    stored = torch.load(web.app.state.registry / model_id / "model.pt", weights_only=True)
    assert state.keys() == stored.keys() and all(torch.equal(state[k], stored[k]) for k in state)
    graph = owner.http.get(f"/models/{model_id}/download?format=onnx")
    assert graph.status_code == 200
    onnx.checker.check_model(onnx.load_from_string(graph.content))
    downloads = _actions(web, "model.download")
    assert ("user:mona", f"model:{model_id}", '{"format":"onnx"}') in downloads
    assert ("user:mona", f"model:{model_id}", '{"format":"torch"}') in downloads

    api = web.call("GET", f"/models/{model_id}", owner.token).json()
    assert api["metrics"]["per_site"] == PER_SITE and "# Model card" in api["card"]
    by_api = web.call("GET", f"/models/{model_id}/download?format=torch", owner.token)
    assert by_api.status_code == 200 and by_api.content == weights.content
    assert web.call("GET", f"/models/{model_id}/download", outsider.token).status_code == 404
    bad = owner.http.get("/models/..%2F..%2Fetc/download?format=torch")
    assert bad.status_code == 404
    assert owner.http.get(f"/models/{model_id}/download/pickle").status_code == 404


def test_a_models_page_says_withheld_for_a_sites_rows_it_did_not_release(web, tmp_path):
    """Site south withheld its row counts (a small test set): the model page says so, as the
    run page does, never "None" or an empty cell."""
    owner = person(web, "wilma")
    pid = _project(web, owner, "withheld rows")
    per_site = PER_SITE | {
        "south": {"accuracy": 0.66, "auroc": 0.74, "n_train": None, "n_test": None}
    }
    with registry_at(web, tmp_path / "models"):
        model_id = registered_model(web, pid, per_site)
        page = owner.http.get(f"/models/{model_id}").text
    lineage = re.search(r"<h2>Lineage.*?</table>", page, re.S).group(0)
    south = re.search(r"<tr><td>south</td>(.*?)</tr>", lineage, re.S).group(1)
    assert re.findall(r'<td class="num">(.*?)</td>', south) == ["withheld", "withheld"]
    metrics = re.search(r'<table id="model-metrics">.*?</table>', page, re.S).group(0)
    assert "None" not in lineage and "None" not in metrics
    assert "n_test withheld" in metrics


def test_a_models_page_without_a_registry_says_what_to_do(web, admin):
    page = admin.http.get("/models")
    assert page.status_code == 200 and "--flower" in page.text


def test_an_admin_changes_a_users_role_and_the_api_follows_it(web, admin):
    ravi = person(web, "ravi")
    uid = web.call("POST", "/users", web.admin, json={"name": "x-ravi", "role": "viewer"})
    assert uid.status_code == 201
    with web.app.state.engine.connect() as conn:
        rid = conn.execute(select(users.c.id).where(users.c.name == "ravi")).scalar_one()
    assert web.call("POST", "/projects", ravi.token, json={"name": "before"}).status_code == 201
    wrong = admin.post(
        f"/admin/users/{rid}/role", {"role": "viewer", "admin_password": "nope"}, "/admin/users"
    )
    assert wrong.status_code == 403
    changed = admin.post(
        f"/admin/users/{rid}/role", {"role": "viewer", "admin_password": PASSWORD}, "/admin/users"
    )
    assert changed.status_code == 303, changed.text
    assert web.call("POST", "/projects", ravi.token, json={"name": "after"}).status_code == 403
    assert (
        "user:admin",
        "user:ravi",
        '{"from":"researcher","site":null,"to":"viewer"}',
    ) in _actions(web, "user.role")
    own = admin.post(
        "/admin/users/1/role", {"role": "viewer", "admin_password": PASSWORD}, "/admin/users"
    )
    assert own.status_code == 409
    siteless = web.call("PUT", f"/users/{rid}/role", web.admin, json={"role": "site_admin"})
    assert siteless.status_code == 422 and "site" in siteless.text
    back = web.call("PUT", f"/users/{rid}/role", web.admin, json={"role": "researcher"})
    assert back.status_code == 200 and back.json()["role"] == "researcher"


def test_an_account_request_is_queued_then_approved_with_a_one_time_password(web, admin):
    public = Browser(web.app)
    form = public.http.get("/request-account")
    assert form.status_code == 200 and "Organisation" in form.text
    asked = {
        "name": "newcomer",
        "email": "n@example.org",
        "organisation": "St Elsewhere",
        "reason": "MACE study",
    }
    sent = public.post("/request-account", asked, page="/request-account")
    assert sent.status_code == 202 and 'id="request-sent"' in sent.text
    again = public.post("/request-account", asked, page="/request-account")
    assert again.status_code == 409 and "already in use or waiting" in again.text
    bad = public.post(
        "/request-account", asked | {"email": "not-an-address"}, page="/request-account"
    )
    assert bad.status_code == 422 and "email" in bad.text
    queue = admin.http.get("/admin/requests")
    assert queue.text.count("St Elsewhere") == 1
    rid = request_id(web, "newcomer")
    approved = admin.post(
        f"/admin/requests/{rid}/approve",
        {"role": "researcher", "admin_password": PASSWORD},
        page="/admin/requests",
    )
    assert approved.status_code == 201, approved.text
    one_time = re.search(r'id="one-time-password">([^<]+)<', approved.text)[1]
    newcomer = Browser(web.app)
    newcomer.sign_in("newcomer", one_time)
    kept = newcomer.http.get("/projects")
    assert kept.headers["location"] == "/account?done=one-time", "their own password first"
    twice = admin.post(
        f"/admin/requests/{rid}/approve",
        {"role": "researcher", "admin_password": PASSWORD},
        page="/admin/requests",
    )
    assert twice.status_code == 409 and "already approved" in twice.text
    assert ("public", f"request:{rid}") in [a[:2] for a in _actions(web, "access.request")]
    assert ("user:admin", f"request:{rid}") in [a[:2] for a in _actions(web, "access.approved")]


def test_an_account_request_is_declined_with_a_note_and_a_full_queue_refuses_more(
    web, admin, monkeypatch
):
    public = Browser(web.app)
    asked = {"name": "spammer", "email": "s@example.org", "organisation": "x", "reason": "y"}
    public.post("/request-account", asked, page="/request-account")
    rid = request_id(web, "spammer")
    declined = admin.post(
        f"/admin/requests/{rid}/decline", {"note": "unknown to us"}, page="/admin/requests"
    )
    assert declined.status_code == 303
    assert "unknown to us" in admin.http.get("/admin/requests").text
    with web.app.state.engine.connect() as conn:
        assert conn.execute(select(users.c.id).where(users.c.name == "spammer")).first() is None
    monkeypatch.setattr(requests_store, "MAX_PENDING", 0)
    full = public.post("/request-account", asked | {"name": "late"}, page="/request-account")
    assert full.status_code == 429 and "too many" in full.text


def test_the_maintenance_banner_shows_on_every_page_until_cleared(web, admin):
    note = "Maintenance on Saturday 08:00-10:00 UTC"
    saved = admin.post("/admin/maintenance", {"text": note}, page="/admin/maintenance")
    assert saved.status_code == 303
    for browser, path in (
        (Browser(web.app), "/signin"),
        (admin, "/projects"),
        (Browser(web.app), "/request-account"),
    ):
        assert note in browser.http.get(path).text, path
    other_process = banner.Banner(web.app.state.engine)
    assert other_process.current() == note, "stored, so every hub process shows it"
    too_long = admin.post("/admin/maintenance", {"text": "x" * 501}, page="/admin/maintenance")
    assert too_long.status_code == 422
    admin.post("/admin/maintenance", {"text": ""}, page="/admin/maintenance")
    assert "maintenance-banner" not in Browser(web.app).http.get("/signin").text
    assert [a[1] for a in _actions(web, "hub.banner.set")] == ["hub"]
    assert len(_actions(web, "hub.banner.clear")) >= 1


def test_the_sites_page_shows_each_sites_connection_health(web, admin, monkeypatch):
    polled = web.site("h-polling")
    web.site("h-quiet")
    web.site("h-gone")
    assert web.call("GET", "/agent/work", polled).status_code == 200
    with web.app.state.engine.connect() as conn:
        from flip.hub.db import sites

        gone = conn.execute(select(sites.c.id).where(sites.c.name == "h-gone")).scalar_one()
    monkeypatch.setitem(web.app.state.seen, gone, time.time() - 7200)
    page = admin.http.get("/admin/sites").text
    row = {
        name: re.search(rf"<td>{name}</td>.*?health-([a-z-]+)", page, re.S)[1]
        for name in ("h-polling", "h-quiet", "h-gone")
    }
    assert row == {"h-polling": "connected", "h-quiet": "never", "h-gone": "silent"}


def test_a_completed_runs_page_links_its_model_and_downloads(web, tmp_path):
    owner = person(web, "rhea")
    pid = _project(web, owner, "done")
    with registry_at(web, tmp_path / "models"):
        model_id = registered_model(web, pid)
    web.call(
        "POST",
        f"/projects/{pid}/tasks",
        owner.token,
        json={"hash": "ef" * 32, "kind": "tabular-logreg", "spec": {}},
    )
    run = web.call(
        "POST", f"/projects/{pid}/runs", owner.token, json={"task_hash": "ef" * 32, "rounds": 1}
    ).json()
    site = web.site("done-site")
    owner.post(f"/projects/{pid}/sites", {"site": "done-site"}, page=f"/projects/{pid}")
    web.call("POST", f"/agent/runs/{run['id']}", site, json={"status": "joined"})
    web.call("POST", f"/runs/{run['id']}/status", owner.token, json={"status": "running"})
    results = {"per_site": PER_SITE, "model": model_id}
    done = web.call(
        "POST",
        f"/runs/{run['id']}/status",
        owner.token,
        json={"status": "completed", "results": results},
    )
    assert done.status_code == 200, done.text
    page = owner.http.get(f"/runs/{run['id']}").text
    assert (
        f'href="/models/{model_id}"' in page and f"/models/{model_id}/download?format=onnx" in page
    )
    assert "north" in page and "0.78" in page, "per-site metrics at the end of the run"


def _finished_run(web, owner: str, name: str, kind: str, per_site: dict) -> tuple[str, str, dict]:
    """A one-site run of a `kind` task that completed with `per_site` results: its page, the
    page's site-metrics table, and the table's cells by (site, metric)."""
    researcher = person(web, owner)
    pid = _project(web, researcher, name)
    digest = hashlib.sha256(name.encode()).hexdigest()
    task = {"hash": digest, "kind": kind, "spec": {}}
    web.call("POST", f"/projects/{pid}/tasks", researcher.token, json=task)
    run = web.call(
        "POST", f"/projects/{pid}/runs", researcher.token, json={"task_hash": digest, "rounds": 1}
    ).json()
    site = web.site(f"{name}-site")
    researcher.post(f"/projects/{pid}/sites", {"site": f"{name}-site"}, page=f"/projects/{pid}")
    web.call("POST", f"/agent/runs/{run['id']}", site, json={"status": "joined"})
    web.call("POST", f"/runs/{run['id']}/status", researcher.token, json={"status": "running"})
    ended = web.call(
        "POST",
        f"/runs/{run['id']}/status",
        researcher.token,
        json={"status": "completed", "results": {"per_site": per_site}},
    )
    assert ended.status_code == 200, ended.text
    page = researcher.http.get(f"/runs/{run['id']}").text
    table = re.search(r'<table id="site-metrics">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r'<tr data-site="([^"]+)" data-metric="([^"]+)">(.*?)</tr>', table, re.S)
    shown = {(site, metric): re.sub(r"<[^>]+>", " ", cells).split() for site, metric, cells in rows}
    return page, table, shown


def test_a_finished_runs_sites_show_federated_metrics_and_local_only_as_not_computed(web):
    page, table, shown = _finished_run(web, "rosa", "ended", "tabular-logreg", PER_SITE)
    assert set(shown) == {(s, m) for s in PER_SITE for m in ("accuracy", "auroc")}
    assert shown[("north", "auroc")][-3:] == ["0.78", "not", "computed"]
    assert shown[("south", "accuracy")][-3:] == ["0.66", "not", "computed"]
    assert "120" in table and "30" in table, "each site's training and test rows"
    assert "trains only the federated model" in page, "why local-only is not shown"


def test_a_personalised_runs_sites_show_their_personal_model_beside_the_federated_one(web):
    per_site = {
        name: {**found, "personal_auroc": found["auroc"] + 0.1} for name, found in PER_SITE.items()
    }
    _, table, shown = _finished_run(web, "ines", "personal", "tabular-mlp", per_site)
    assert set(shown) == {(s, m) for s in PER_SITE for m in ("accuracy", "auroc")}
    assert "Personalised model" in table
    assert shown[("north", "auroc")][-4:] == ["0.78", "0.88", "not", "computed"]
    assert shown[("south", "accuracy")][-5:] == ["0.66", "not", "reported", "not", "computed"]
