"""The hub's web app: TOTP sign-in, cookie flags, CSRF, CSP, live answers, and the role
matrix over every page (the API's rules, seen through the browser)."""

import re
import threading
import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select, update

from flip.hub import api_tokens
from flip.hub.db import now, projects, users
from flip.hub.web import account, concept_search, joining, live, signin
from flip.hub.web import admin as admin_pages
from flip.hub.web import analyses as analyses_pages
from flip.hub.web import models as models_pages
from flip.hub.web import projects as projects_pages
from flip.hub.web import quality as quality_pages
from flip.hub.web import tasks as tasks_pages
from flip.hub.web.pages import WebRoute
from tests.hub.conftest import WEB_PASSWORD, Hub
from tests.hub.web_client import Browser
from tests.hub.web_world import registered_model, registry_at
from tests.hub.web_world import request_id as queued_request

PASSWORD = WEB_PASSWORD


def person(hub: Hub, name: str, role: str = "researcher", site: str | None = None) -> Browser:
    """A user with a password (a site_admin of `site`), signed in (TOTP enrolled) in their
    own browser."""
    body = {"name": name, "role": role} | ({} if site is None else {"site": site})
    made = hub.call("POST", "/users", hub.admin, json=body)
    assert made.status_code == 201, made.text
    hub.call("PUT", f"/users/{made.json()['id']}/password", hub.admin, json={"password": PASSWORD})
    browser = Browser(hub.app)
    browser.sign_in(name, PASSWORD)
    browser.token = made.json()["token"]
    return browser


def _invite(admin: Browser, name: str, role: str) -> str:
    """Invite user `name` on the admin's users page; the one-time password it shows once."""
    invited = admin.post(
        "/admin/users",
        {"name": name, "role": role, "admin_password": PASSWORD},
        page="/admin/users",
    )
    return re.search(r'id="one-time-password">([^<\s]+)<', invited.text).group(1)


def test_a_site_admin_lands_on_a_page_their_role_may_see(web):
    web.site("landing-site")
    body = {"name": "sam", "role": "site_admin", "site": "landing-site"}
    made = web.call("POST", "/users", web.admin, json=body)
    assert made.status_code == 201, made.text
    web.call("PUT", f"/users/{made.json()['id']}/password", web.admin, json={"password": PASSWORD})
    sam = Browser(web.app)
    first = sam.post("/signin", {"name": "sam", "password": PASSWORD})
    assert first.headers["location"] == "/signin/enrol"
    sam.secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', sam.http.get("/signin/enrol").text)[1]
    sam.step = int(time.time()) // 30 - 1
    codes = sam.post("/signin/enrol", {"code": sam.code()}, page="/signin/enrol")
    assert 'class="button" href="/account"' in codes.text, "continue to a page sam may see"
    again = sam.post("/signin", {"name": "sam", "password": PASSWORD, "code": sam.code()})
    assert again.headers["location"] == "/account"
    assert sam.http.get("/").headers["location"] == "/account"
    landed = sam.http.get("/account")
    assert landed.status_code == 200 and "site console" in landed.text
    assert 'href="/projects"' not in landed.text, "no link to a page they may not see"
    assert Browser(web.app).http.get("/").headers["location"] == "/signin"


def test_sign_in_needs_totp_once_enrolled_and_a_code_works_once(web):
    rita = person(web, "rita")
    assert rita.http.get("/projects").status_code == 200
    assert rita.post("/signout", page="/projects").status_code == 303
    assert rita.http.get("/projects").headers["location"].startswith("/signin")

    no_code = rita.post("/signin", {"name": "rita", "password": PASSWORD})
    assert no_code.status_code == 401 and "one-time code" in no_code.text
    current = pyotp.TOTP(rita.secret).now()
    replayed = rita.post("/signin", {"name": "rita", "password": PASSWORD, "code": current})
    assert replayed.status_code == 401, "the code used to enrol does not work again"
    rita.sign_in("rita", PASSWORD)
    assert rita.http.get("/account").status_code == 200

    api = web.call("POST", "/login", json={"name": "rita", "password": PASSWORD})
    assert api.status_code == 401 and "code" in api.json()["detail"]
    wrong = web.call("POST", "/login", json={"name": "rita", "password": "not the password"})
    assert wrong.json() == api.json(), "a right password with no code is not told apart"


def test_a_recovery_code_signs_in_once(web):
    rosa = Browser(web.app)
    web.user("rosa", "researcher")
    with web.app.state.engine.connect() as conn:
        uid = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'rosa'").scalar()
    web.call("PUT", f"/users/{uid}/password", web.admin, json={"password": PASSWORD})
    rosa.post("/signin", {"name": "rosa", "password": PASSWORD})
    rosa.secret = re.search(r'id="totp-secret">(\w+)<', rosa.http.get("/signin/enrol").text)[1]
    page = rosa.post("/signin/enrol", {"code": pyotp.TOTP(rosa.secret).now()}, page="/signin/enrol")
    codes = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", page.text)
    assert len(codes) == 10
    other = Browser(web.app)
    first = other.post("/signin", {"name": "rosa", "password": PASSWORD, "code": codes[0]})
    assert first.status_code == 303
    again = other.post("/signin", {"name": "rosa", "password": PASSWORD, "code": codes[0]})
    assert again.status_code == 401


def test_cookies_are_httponly_and_strict_and_pages_carry_a_strict_csp(web):
    browser = Browser(web.app)
    page = browser.http.get("/signin")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
    assert '<script src="/static/flip.js"' in page.text and "<script>" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    made = web.call("POST", "/users", web.admin, json={"name": "cora", "role": "viewer"})
    web.call("PUT", f"/users/{made.json()['id']}/password", web.admin, json={"password": PASSWORD})
    browser.post("/signin", {"name": "cora", "password": PASSWORD})
    secret = re.search(r'id="totp-secret">(\w+)<', browser.http.get("/signin/enrol").text)[1]
    done = browser.post("/signin/enrol", {"code": pyotp.TOTP(secret).now()}, page="/signin/enrol")
    session = [c for c in done.headers.get_list("set-cookie") if c.startswith("flip_session=")]
    assert session and "httponly" in session[0].lower() and "samesite=strict" in session[0].lower()
    assert "secure" not in session[0].lower(), "plain HTTP: no Secure flag"
    assert "content-security-policy" not in web.http.get("/health").headers or True
    assert "content-security-policy" not in web.call("GET", "/projects/1", web.admin).headers


def test_secure_cookie_under_tls(web):
    browser = Browser(web.app)
    browser.http.base_url = "https://testserver"
    page = browser.http.get("/signin")
    assert "secure" in page.headers["set-cookie"].lower()


def test_secure_cookie_when_the_operator_says_a_proxy_ends_tls(web, monkeypatch):
    forwarded = Browser(web.app).http.get("/signin", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in forwarded.headers["set-cookie"].lower()
    monkeypatch.setattr(web.app.state, "behind_tls", True)
    page = Browser(web.app).http.get("/signin")
    assert "secure" in page.headers["set-cookie"].lower()


def test_a_researcher_is_not_shown_every_site_to_invite(web, admin):
    web.site("secret-site")
    owner = person(web, "nosy")
    pid = owner.post("/projects", {"name": "nosy"}, page="/projects").headers["location"]
    assert "secret-site" not in owner.http.get(pid).text
    assert "secret-site" in admin.http.get(pid).text


def test_a_form_without_its_csrf_token_changes_nothing(web):
    olga = person(web, "olga")
    count = select(func.count()).select_from(projects)
    with web.app.state.engine.connect() as conn:
        before = conn.execute(count).scalar()
    missing = olga.http.post("/projects", data={"name": "forged"})
    wrong = olga.http.post("/projects", data={"name": "forged", "csrf": "not-the-token"})
    assert missing.status_code == 403 and wrong.status_code == 403
    assert "security token" in missing.text
    with web.app.state.engine.connect() as conn:
        assert conn.execute(count).scalar() == before
    other = person(web, "olgas-neighbour")
    olga.http.cookies.set("flip_csrf", other.http.cookies.get("flip_csrf"))
    borrowed = olga.http.post("/projects", data={"name": "forged", "csrf": other.csrf("/projects")})
    assert borrowed.status_code == 403, "a token is bound to the session it was shown in"
    with web.app.state.engine.connect() as conn:
        assert conn.execute(count).scalar() == before
    made = olga.post("/projects", {"name": "real"}, page="/projects")
    assert made.status_code == 303 and made.headers["location"].startswith("/projects/")


def test_an_api_token_in_the_cookie_is_not_a_web_session(web):
    browser = Browser(web.app)
    browser.http.cookies.set("flip_session", web.admin)
    assert browser.http.get("/admin/users").headers["location"].startswith("/signin")


def test_an_api_login_session_does_not_open_the_web_app(web):
    """A user who never enrolled TOTP logs in through the API with the password alone: that
    session (here of 30 days) is no web session."""
    made = web.call("POST", "/users", web.admin, json={"name": "apionly", "role": "admin"})
    web.call("PUT", f"/users/{made.json()['id']}/password", web.admin, json={"password": PASSWORD})
    login = {"name": "apionly", "password": PASSWORD, "expires_in_hours": 720}
    session = web.call("POST", "/login", json=login)
    assert session.status_code == 200, session.text
    browser = Browser(web.app)
    browser.http.cookies.set("flip_session", session.json()["token"])
    assert browser.http.get("/admin/users").headers["location"].startswith("/signin")
    assert web.call("GET", "/projects/999", session.json()["token"]).status_code == 404


def test_cohort_answers_show_suppressed_counts_as_below_the_threshold(web):
    owner = person(web, "quinn")
    site_a, site_b = web.site("qa"), web.site("qb")
    pid = owner.post("/projects", {"name": "cohorts"}, page="/projects").headers["location"]
    pid = int(pid.rsplit("/", 1)[1])
    for name in ("qa", "qb"):
        owner.post(f"/projects/{pid}/sites", {"site": name}, page=f"/projects/{pid}")
    form = {
        "mode": "form",
        "name": "diabetes over 40",
        "include-0-table": "condition_occurrence",
        "include-0-concepts": "201826",
        "include-0-descendants": "on",
        "age_min": "40",
        "histogram-sex": "on",
    }
    asked = owner.post(f"/projects/{pid}/queries", form, page=f"/projects/{pid}/cohort")
    assert asked.status_code == 303, asked.text
    qid = int(asked.headers["location"].rsplit("/", 1)[1])
    definition = web.call("GET", f"/queries/{qid}", web.admin).json()
    assert definition["pending"] == ["qa", "qb"]
    page = owner.http.get(f"/queries/{qid}").text
    assert "&#34;concept_ids&#34;: [\n    201826" in page or "201826" in page
    assert 'data-events="/queries/' in page and "waiting for 2 sites" in page

    web.call(
        "POST",
        f"/agent/queries/{qid}",
        site_a,
        json={"count": 37, "suppressed": False, "threshold": 10, "histograms": {}},
    )
    web.call(
        "POST",
        f"/agent/queries/{qid}",
        site_b,
        json={"count": None, "suppressed": True, "threshold": 10, "histograms": {}},
    )
    page = owner.http.get(f"/queries/{qid}").text
    row_b = re.search(r'data-site="qb">.*?</tr>', page, re.S).group(0)
    assert "&lt;10" in row_b and ">0<" not in row_b
    assert "37" in page and "withheld" in page
    total = re.search(r'id="total">(.*?)</td>', page, re.S).group(1)
    assert "37" not in total, "the combined view never shows a total that hides a suppressed site"

    with owner.http.stream("GET", f"/queries/{qid}/events") as events:
        body = "".join(events.iter_text())
    assert "event: update" in body and "event: done" in body and "&lt;10" in body


def test_an_atlas_cohort_pasted_as_json_shows_its_attrition_per_site_and_combined(web):
    import json
    from pathlib import Path

    owner = person(web, "ada")
    site_a, site_b = web.site("aa"), web.site("ab")
    pid = owner.post("/projects", {"name": "atlas"}, page="/projects").headers["location"]
    pid = int(pid.rsplit("/", 1)[1])
    for name in ("aa", "ab"):
        owner.post(f"/projects/{pid}/sites", {"site": name}, page=f"/projects/{pid}")
    circe = (Path(__file__).parents[1] / "data" / "circe" / "t2dm_older_high_sbp.json").read_text()
    asked = owner.post(
        f"/projects/{pid}/queries",
        {"mode": "json", "definition": circe},
        page=f"/projects/{pid}/cohort",
    )
    assert asked.status_code == 303, asked.text
    qid = int(asked.headers["location"].rsplit("/", 1)[1])
    assert (
        web.call("GET", f"/queries/{qid}", web.admin).json()["name"] == json.loads(circe)["Title"]
    )
    for site, count, steps in (
        (site_a, None, [120, 60, "<10"]),
        (site_b, 30, [80, "withheld", 30]),
    ):
        body = {"count": count, "suppressed": count is None, "threshold": 10, "attrition": steps}
        assert web.call("POST", f"/agent/queries/{qid}", site, json=body).status_code == 204
    page = owner.http.get(f"/queries/{qid}").text
    table = re.search(r'<table id="attrition">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in rows]
    assert cells[0] == ["Step", "aa", "ab", "All sites"]
    assert cells[1] == ["primary criteria", "120", "80", "200"]
    assert cells[2] == ["aged 50 or over at index", "60", "withheld", "60+"]
    assert cells[3][1:] == ["&lt;10", "30", "31+"]


def test_a_bad_cohort_field_is_named_and_nothing_is_asked(web):
    owner = person(web, "bea")
    pid = owner.post("/projects", {"name": "b"}, page="/projects").headers["location"]
    pid = int(pid.rsplit("/", 1)[1])
    form = {"mode": "form", "include-0-table": "note", "include-0-concepts": "12 x"}
    answer = owner.post(f"/projects/{pid}/queries", form, page=f"/projects/{pid}/cohort")
    assert answer.status_code == 422 and "include-0 concept ids" in answer.text
    bad_json = owner.post(
        f"/projects/{pid}/queries", {"mode": "json", "definition": "{"}, page="/projects"
    )
    assert bad_json.status_code == 422


def test_the_project_page_shows_the_privacy_budget_its_runs_spent(web):
    from flip.fl.privacy import PrivacySpec

    owner = person(web, "priya")
    pid = web.call("POST", "/projects", owner.token, json={"name": "dp"}).json()["id"]
    assert "No run with differential privacy yet" in owner.http.get(f"/projects/{pid}").text
    site = web.site("dp-site")
    owner.post(f"/projects/{pid}/sites", {"site": "dp-site"}, page=f"/projects/{pid}")
    central = {"level": "site", "noise_multiplier": 1.1, "clipping_norm": 1.0}
    record = {"level": "record", "noise_multiplier": 1.0, "clipping_norm": 1.0}
    for digest, privacy in (("c1" * 32, central), ("d2" * 32, record)):
        spec = {"rounds": 3, "privacy": privacy}
        task = {"hash": digest, "kind": "tabular-logreg", "spec": spec}
        assert web.call("POST", f"/projects/{pid}/tasks", owner.token, json=task).status_code == 201
        body = {"task_hash": digest, "rounds": 3}
        run = web.call("POST", f"/projects/{pid}/runs", owner.token, json=body).json()["id"]
        web.call("POST", f"/agent/runs/{run}", site, json={"status": "joined"})
        owner.post(f"/runs/{run}/status", {"status_to": "running"}, page=f"/runs/{run}")
        for n in (1, 2):
            metrics = {"round": n, "metrics": {"auroc": 0.6}}
            assert web.call("POST", f"/runs/{run}/rounds", owner.token, json=metrics).is_success
    page = owner.http.get(f"/projects/{pid}").text
    section = page[page.index('id="privacy-budget"') :]
    spent = PrivacySpec(**central).epsilon(2)
    assert f"&epsilon; = {spent:.2f}</strong>" in section, "two finished rounds of the central run"
    assert "each site accounts it" in section, "record level: the sites' own accounting"
    assert section.count("<tr>") == 3


def test_run_page_draws_the_rounds_and_offers_downloads(web):
    owner = person(web, "ruth")
    pid = owner.post("/projects", {"name": "r"}, page="/projects").headers["location"]
    pid = int(pid.rsplit("/", 1)[1])
    task = {"hash": "ab" * 32, "kind": "tabular-logreg", "spec": {"rounds": 2}}
    assert web.call("POST", f"/projects/{pid}/tasks", owner.token, json=task).status_code == 201
    project_page = owner.http.get(f"/projects/{pid}").text
    assert "abababababab" in project_page and "waiting for a site" in project_page
    run = web.call(
        "POST", f"/projects/{pid}/runs", owner.token, json={"task_hash": "ab" * 32, "rounds": 2}
    ).json()
    site = web.site("rs")
    owner.post(f"/projects/{pid}/sites", {"site": "rs"}, page=f"/projects/{pid}")
    web.call("POST", f"/agent/runs/{run['id']}", site, json={"status": "joined"})
    stopped = owner.post(
        f"/runs/{run['id']}/status", {"status_to": "running"}, page=f"/runs/{run['id']}"
    )
    assert stopped.status_code == 303, stopped.text
    for n, auroc in ((1, 0.61), (2, 0.72)):
        web.call(
            "POST",
            f"/runs/{run['id']}/rounds",
            owner.token,
            json={"round": n, "metrics": {"auroc": auroc}},
        )
    page = owner.http.get(f"/runs/{run['id']}").text
    assert "<polyline" in page and "auroc" in page and "2 of 2 rounds" in page
    download = owner.http.get(f"/runs/{run['id']}/results.json")
    assert download.status_code == 200 and download.json()["round_metrics"][1]["auroc"] == 0.72
    stop = owner.post(
        f"/runs/{run['id']}/status", {"status_to": "cancelled"}, page=f"/runs/{run['id']}"
    )
    assert stop.status_code == 303
    assert web.call("GET", f"/runs/{run['id']}", owner.token).json()["status"] == "cancelled"


def _new_token(browser: Browser, name: str, days: int = 7):
    form = {"name": name, "password": PASSWORD, "expires_in_days": days}
    return browser.post("/account/tokens", form, page="/account")


def _token_rows(browser: Browser) -> dict[str, str]:
    """The account page's token rows by the token's name."""
    page = browser.http.get("/account").text
    rows = re.findall(r'<tr id="token-\d+">(.*?)</tr>', page, re.S)
    return {re.search(r'<th scope="row">([^<]+)</th>', row)[1]: row for row in rows}


def test_account_token_is_capped_by_the_hub_policy_and_revocable(web):
    tess = person(web, "tess")
    cap = web.app.state.policy.max_token_days
    over = _new_token(tess, "laptop", cap + 1)
    assert over.status_code == 422 and "limit" in over.text
    made = _new_token(tess, "laptop")
    token = re.search(r'id="new-token">([^<\s]+)<', made.text).group(1)
    assert web.call("GET", "/projects/999", token).status_code == 404
    revoke = re.search(r'action="(/account/tokens/\d+/revoke)"', _token_rows(tess)["laptop"])[1]
    tess.post(revoke, page="/account")
    assert web.call("GET", "/projects/999", token).status_code == 401
    assert tess.http.get("/account").status_code == 200, "the web session goes on"


def test_account_lists_each_named_token_with_its_dates_and_a_revoke_button_in_its_row(web):
    tess = person(web, "tessa")
    made = {name: _new_token(tess, name) for name in ("laptop", "ci")}
    tokens = {n: re.search(r'id="new-token">([^<\s]+)<', r.text)[1] for n, r in made.items()}
    rows = _token_rows(tess)
    page = tess.http.get("/account").text
    for name in ("laptop", "ci"):
        row = rows[name]
        assert tokens[name][:12] in row and tokens[name] not in page, "named by prefix only"
        created, expires = re.findall(r"<time datetime=\"([^\"]+)\"", row)[:2]
        assert created < expires, "created, then expires 7 days on"
        assert re.search(r'action="/account/tokens/\d+/revoke"', row) and "active" in row
    revoke = re.search(r'action="(/account/tokens/\d+/revoke)"', rows["laptop"])[1]
    assert tess.post(revoke, page="/account").status_code == 303
    assert set(_token_rows(tess)) == set(rows) - {"laptop"}
    assert web.call("GET", "/projects/999", tokens["laptop"]).status_code == 401
    assert web.call("GET", "/projects/999", tokens["ci"]).status_code == 404, "ci still works"


def test_account_shows_when_each_token_was_last_used(web):
    tina = person(web, "tina")
    token = re.search(r'id="new-token">([^<\s]+)<', _new_token(tina, "laptop").text)[1]
    assert "never used" in _token_rows(tina)["laptop"]
    assert web.call("GET", "/projects/999", token).status_code == 404
    row = _token_rows(tina)["laptop"]
    assert "never used" not in row and len(re.findall(r"<time datetime=", row)) == 3, row


def test_a_token_revoke_form_cannot_end_another_users_token(web):
    ann, bob = person(web, "ann-web"), person(web, "bob-web")
    _new_token(bob, "ci")
    bobs = re.search(r'action="/account/tokens/(\d+)/revoke"', _token_rows(bob)["ci"])[1]
    refused = ann.post(f"/account/tokens/{bobs}/revoke", page="/account")
    assert refused.status_code == 404
    assert "ci" in _token_rows(bob)


def test_an_admin_disabling_a_user_on_the_web_ends_every_token_they_hold(web, admin):
    dora = person(web, "dora-web")
    tokens = [re.search(r'id="new-token">([^<\s]+)<', _new_token(dora, n).text)[1] for n in "ab"]
    assert all(web.call("GET", "/projects/999", t).status_code == 404 for t in tokens)
    with web.app.state.engine.connect() as conn:
        uid = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'dora-web'").scalar()
    assert admin.post(f"/admin/users/{uid}/disable", {}, page="/admin/users").status_code == 303
    for token in [*tokens, dora.token]:
        assert web.call("GET", "/projects/999", token).status_code == 401
    assert dora.http.get("/account").status_code in (303, 401), "the web session ended too"


def test_admin_creates_a_site_whose_token_is_shown_once_and_invites_a_user(web, admin):
    created = admin.post("/admin/sites", {"name": "north"}, page="/admin/sites")
    token = re.search(r'id="enrolment-token">([^<\s]+)<', created.text).group(1)
    assert re.search(r'id="enrolment-expires">\d{4}-\d\d-\d\d \d\d:\d\d<', created.text)
    listed = admin.http.get("/admin/sites").text
    assert token not in listed and "enrolment token expires" in listed
    assert web.call("POST", "/sites/enrol", json={"enrolment_token": token}).status_code == 200
    password = _invite(admin, "newbie", "viewer")
    first = Browser(web.app).post("/signin", {"name": "newbie", "password": password})
    assert first.headers["location"] == "/signin/enrol"
    audit = admin.http.get("/admin/audit?verify=1").text
    assert 'id="verified"' in audit and "The chain holds" in audit and "site.create" in audit
    full = admin.http.get("/admin/audit?verify=2").text
    assert "The chain holds" in full and "Every entry checked" in full
    again = admin.http.get("/admin/audit?verify=1").text
    assert "No entry added since the last check" in again and "The chain holds" in again


def test_admin_gives_a_pending_site_a_new_enrolment_token_on_the_web(web, admin):
    created = admin.post("/admin/sites", {"name": "south", "days": "2"}, page="/admin/sites")
    first = re.search(r'id="enrolment-token">([^<\s]+)<', created.text).group(1)
    with web.app.state.engine.connect() as conn:
        sid = conn.exec_driver_sql("SELECT id FROM sites WHERE name = 'south'").scalar()
    renewed = admin.post(f"/admin/sites/{sid}/enrolment", {"days": "3"}, page="/admin/sites")
    second = re.search(r'id="enrolment-token">([^<\s]+)<', renewed.text).group(1)
    assert web.call("POST", "/sites/enrol", json={"enrolment_token": first}).status_code == 401
    assert web.call("POST", "/sites/enrol", json={"enrolment_token": second}).status_code == 200


def test_a_one_time_password_expires(web, admin):
    password = _invite(admin, "late-comer", "viewer")
    with web.app.state.engine.begin() as conn:
        ends = conn.execute(
            select(users.c.password_expires_at).where(users.c.name == "late-comer")
        ).scalar_one()
        assert timedelta(days=6) < ends - now() <= timedelta(days=admin_pages.ONE_TIME_DAYS)
        conn.execute(
            update(users)
            .where(users.c.name == "late-comer")
            .values(password_expires_at=now() - timedelta(minutes=1))
        )
    refused = Browser(web.app).post("/signin", {"name": "late-comer", "password": password})
    assert refused.status_code == 401
    assert "this one-time password expired: ask an admin for a new one" in refused.text
    login = web.call("POST", "/login", json={"name": "late-comer", "password": password})
    assert login.status_code == 401 and "expired" in login.json()["detail"]


def _totp_secret_of(hub: Hub, name: str):
    with hub.app.state.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT totp_secret FROM users WHERE name = ?", (name,)
        ).scalar()


@pytest.mark.parametrize("change", ["password", "revoke"])
def test_an_unfinished_enrolment_ends_when_the_user_changes(web, change):
    """An enrolment begun before a password reset or a revocation never turns TOTP on."""
    name = f"pending-{change}"
    made = web.call("POST", "/users", web.admin, json={"name": name, "role": "researcher"})
    uid = made.json()["id"]
    web.call("PUT", f"/users/{uid}/password", web.admin, json={"password": PASSWORD})
    stale = Browser(web.app)
    assert stale.post("/signin", {"name": name, "password": PASSWORD}).status_code == 303
    secret = re.search(r'id="totp-secret">(\w+)<', stale.http.get("/signin/enrol").text)[1]
    if change == "password":
        web.call("PUT", f"/users/{uid}/password", web.admin, json={"password": PASSWORD + "!"})
    else:
        assert web.call("DELETE", f"/users/{uid}/token", web.admin).status_code == 204
    assert stale.http.get("/signin/enrol").headers["location"].startswith("/signin")
    late = stale.post("/signin/enrol", {"code": pyotp.TOTP(secret).now()}, page="/signin")
    assert late.status_code == 303 and late.headers["location"].startswith("/signin")
    assert _totp_secret_of(web, name) is None


def test_a_live_stream_ends_when_the_user_is_revoked(web, monkeypatch):
    monkeypatch.setattr(live, "POLL", 0.1)
    monkeypatch.setattr(live, "LIFETIME", 20.0)
    owner = person(web, "streamer")
    with web.app.state.engine.connect() as conn:
        uid = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'streamer'").scalar()
    web.site("st-a")
    pid = web.call("POST", "/projects", owner.token, json={"name": "stream"}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": ["st-a"]})
    query = {"name": "never answered", "definition": {}}
    qid = web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]
    revoke = threading.Timer(1.0, web.call, ("DELETE", f"/users/{uid}/token", web.admin))
    revoke.start()
    started = time.monotonic()
    with owner.http.stream("GET", f"/queries/{qid}/events") as events:
        body = "".join(events.iter_text())
    revoke.join()
    assert "event: update" in body and "event: done" in body
    assert time.monotonic() - started < 10, "the stream stopped soon after the revocation"


def _unanswered_query(web, owner: Browser, site: str) -> int:
    web.site(site)
    pid = web.call("POST", "/projects", owner.token, json={"name": site}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": [site]})
    query = {"name": "never answered", "definition": {}}
    return web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]


def _follow(browser: Browser, path: str, into: list[str]) -> threading.Thread:
    """Read a live stream to its end in a thread, its body into `into`."""

    def read() -> None:
        with browser.http.stream("GET", path) as events:
            into.append("".join(events.iter_text()))

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def _held(web, user_id: int, streams: int) -> None:
    for _ in range(100):
        if web.app.state.streams.users[user_id] == streams:
            return
        time.sleep(0.05)
    raise AssertionError(f"user {user_id} never held {streams} streams")


@pytest.mark.parametrize("ending", ["signout", "password"])
def test_live_streams_are_capped_per_session_and_user_and_end_with_the_session(
    web, monkeypatch, ending
):
    monkeypatch.setattr(live, "POLL", 0.1)
    monkeypatch.setattr(live, "LIFETIME", 20.0)
    monkeypatch.setattr(live, "PER_SESSION", 1)
    monkeypatch.setattr(live, "PER_USER", 1)
    name = f"capped-{ending}"
    first = person(web, name)
    with web.app.state.engine.connect() as conn:
        uid = conn.exec_driver_sql(f"SELECT id FROM users WHERE name = '{name}'").scalar()
    second = Browser(web.app)
    second.secret, second.step = first.secret, first.step
    second.sign_in(name, PASSWORD)
    path = f"/queries/{_unanswered_query(web, first, name)}/events"

    def refused(browser: Browser, held: int) -> None:
        started = time.monotonic()
        with browser.http.stream("GET", path) as events:
            body = "".join(events.iter_text())
        assert f"Live updates are off for this view: you have {held} open" in body
        assert body.endswith("event: done\ndata: \n\n") and time.monotonic() - started < 5

    bodies: list[str] = []
    threads = [_follow(first, path, bodies)]
    _held(web, uid, 1)
    refused(second, 1)  # the user's cap spans their sessions
    monkeypatch.setattr(live, "PER_USER", 2)
    threads.append(_follow(second, path, bodies))
    _held(web, uid, 2)
    refused(first, 1)  # the session's cap
    started = time.monotonic()
    if ending == "signout":
        for browser in (first, second):
            assert browser.post("/signout", page="/projects").status_code == 303
    else:
        form = {"current_password": PASSWORD, "password": PASSWORD + " changed"}
        assert second.post("/account/password", form, page="/account").status_code == 303
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 5, "the streams ended soon after the session did"
    assert [b.endswith("event: done\ndata: \n\n") for b in bodies] == [True, True]
    assert web.app.state.streams.users[uid] == 0 and not web.app.state.streams.sessions


def test_the_project_list_pages_filters_to_ones_own_and_shows_no_one_elses(web, monkeypatch):
    monkeypatch.setattr(projects_pages, "PAGE_SIZE", 3)
    owner = person(web, "lister")
    other = person(web, "other-lister")
    own = [
        web.call("POST", "/projects", owner.token, json={"name": f"own {n}"}).json()["id"]
        for n in range(4)
    ]
    shared = web.call("POST", "/projects", other.token, json={"name": "shared <b>"}).json()["id"]
    web.call("POST", f"/projects/{shared}/members", other.token, json={"users": ["lister"]})
    hidden = web.call("POST", "/projects", other.token, json={"name": "not theirs"}).json()["id"]

    def listed(query: str) -> list[int]:
        page = owner.http.get(f"/projects{query}")
        assert page.status_code == 200, page.text
        return [int(i) for i in re.findall(r'<td><a href="/projects/(\d+)">', page.text)]

    first = owner.http.get("/projects").text
    assert listed("") == [shared, own[3], own[2]]
    assert 'rel="next" href="/projects?q=&amp;owner=&amp;page=2"' in first
    assert listed("?page=2") == [own[1], own[0]]
    assert hidden not in listed("") + listed("?page=2")
    assert listed("?owner=me") == [own[3], own[2], own[1]]
    assert listed("?owner=me&page=2") == [own[0]]
    assert listed("?q=shared") == [shared]
    assert "shared &lt;b&gt;" in owner.http.get("/projects?q=shared").text
    escaped = owner.http.get("/projects", params={"q": '"><script>x</script>', "page": 2}).text
    assert "<script>x" not in escaped and "No project matches" in escaped
    for bad in ("?page=0", "?owner=them", "?page=x", "?q=" + "a" * 201):
        assert owner.http.get(f"/projects{bad}").status_code == 422, bad


def test_a_cohort_json_the_api_would_refuse_is_a_422_on_the_web_too(web):
    import json

    owner = person(web, "jsonbox")
    pid = owner.post("/projects", {"name": "j"}, page="/projects").headers["location"]
    pid = int(pid.rsplit("/", 1)[1])
    circe = {"ConceptSets": [], "PrimaryCriteria": {}, "InclusionRules": 5}
    for definition in ("[1]", '"x"', '{"include": 5}', json.dumps(circe)):
        answer = owner.post(
            f"/projects/{pid}/queries",
            {"mode": "json", "definition": definition},
            page=f"/projects/{pid}/cohort",
        )
        assert answer.status_code == 422, (definition, answer.status_code)


def test_a_project_search_takes_percent_and_underscore_as_themselves(web):
    owner = person(web, "wildcard")
    ids = {
        name: web.call("POST", "/projects", owner.token, json={"name": name}).json()["id"]
        for name in ("50% off", "500 items", "a_b", "axb")
    }

    def found(q: str) -> set[int]:
        page = owner.http.get("/projects", params={"q": q})
        assert page.status_code == 200, page.text
        return {int(i) for i in re.findall(r'<td><a href="/projects/(\d+)">', page.text)}

    assert found("0%") == {ids["50% off"]}
    assert found("a_b") == {ids["a_b"]}


def test_the_combined_breakdown_is_a_bar_chart_that_shows_a_withheld_bin_as_withheld(web):
    owner = person(web, "charter")
    tokens = {name: web.site(name) for name in ("chart-a", "chart-b")}
    pid = web.call("POST", "/projects", owner.token, json={"name": "charted"}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": list(tokens)})
    query = {"name": "by sex", "definition": {"histograms": ["sex"]}}
    qid = web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]
    answers = {"chart-a": {"F": 12, "M": 18}, "chart-b": {"F": None, "M": 15}}
    for name, bins in answers.items():
        count = sum(n or 0 for n in bins.values()) + 5
        body = {"count": count, "suppressed": False, "threshold": 10, "histograms": {"sex": bins}}
        assert web.call("POST", f"/agent/queries/{qid}", tokens[name], json=body).status_code == 204
    page = owner.http.get(f"/queries/{qid}").text
    chart = re.search(r'<svg[^>]*class="chart bars">.*?</svg>', page, re.S)
    assert chart, "the combined breakdown is drawn"
    assert 'aria-label="All sites by sex: F withheld, M 33"' in chart.group(0)
    assert "stroke-dasharray" in chart.group(0), "the withheld bin is an outline, not a bar of 0"
    assert ">0<" not in chart.group(0)


def test_a_live_stream_ends_cleanly_when_its_member_is_taken_off_the_project(web, monkeypatch):
    monkeypatch.setattr(live, "POLL", 0.1)
    monkeypatch.setattr(live, "LIFETIME", 20.0)
    owner = person(web, "stream-owner")
    watcher = person(web, "stream-watcher", "viewer")
    web.site("st-b")
    pid = web.call("POST", "/projects", owner.token, json={"name": "watched"}).json()["id"]
    web.call("POST", f"/projects/{pid}/members", owner.token, json={"users": ["stream-watcher"]})
    uid = web.call("GET", f"/projects/{pid}", owner.token).json()["member_ids"]["stream-watcher"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": ["st-b"]})
    query = {"name": "never answered", "definition": {}}
    qid = web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]
    removal = ("DELETE", f"/projects/{pid}/members/{uid}", owner.token)
    remove = threading.Timer(1.0, web.call, removal)
    remove.start()
    started = time.monotonic()
    with watcher.http.stream("GET", f"/queries/{qid}/events") as events:
        body = "".join(events.iter_text())
    remove.join()
    assert "event: update" in body and body.endswith("event: done\ndata: \n\n"), body[-200:]
    assert time.monotonic() - started < 10, "the stream stopped soon after the removal"
    assert watcher.http.get(f"/queries/{qid}").status_code == 404


def test_bad_input_is_a_4xx_page_with_the_security_headers_never_a_500(web):
    owner = person(web, "mallory")
    pid = owner.post("/projects", {"name": "bad input"}, page="/projects").headers["location"]
    big = "99999999999999999999999"
    cohort = f"{pid}/queries"
    answers = {
        "code of other digits": owner.post(
            "/signin", {"name": "mallory", "password": PASSWORD, "code": "²" * 6}
        ),
        "csrf not ASCII": owner.http.post(
            "/signin", data={"csrf": "é", "name": "x", "password": "y"}
        ),
        "concept ²": owner.post(
            cohort,
            {"include-0-concepts": "²", "include-0-table": "note"},
            page="/projects",
        ),
        "concept of 5000 digits": owner.post(
            cohort,
            {"include-0-concepts": "9" * 5000, "include-0-table": "note"},
            page="/projects",
        ),
        "age of 5000 digits": owner.post(cohort, {"age_min": "9" * 5000}, page="/projects"),
        "NUL in a form": owner.post("/projects", {"name": "a\x00b"}, page="/projects"),
        "NUL in a search": owner.http.get("/projects?q=a%00b"),
        "big project id": owner.http.get(f"/projects/{big}"),
        "big query id": owner.http.get(f"/queries/{big}"),
        "big run id": owner.http.get(f"/runs/{big}/events"),
        "big cohort id": owner.http.get(f"/projects/{big}/cohort"),
        "big id in a form": owner.post(f"/projects/{big}/sites", {"site": "x"}, page="/projects"),
    }
    for what, answer in answers.items():
        assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text[:200])
        assert "content-security-policy" in answer.headers, what
    api = web.call(
        "POST", "/login", json={"name": "mallory", "password": PASSWORD, "code": "\u0661" * 6}
    )
    assert api.status_code == 401


def test_an_unexpected_error_still_carries_the_security_headers(web):
    def boom() -> None:
        raise RuntimeError("a bug")

    web.app.add_api_route("/boom-for-test", boom)
    answer = Browser(web.app).http.get("/boom-for-test")
    assert answer.status_code == 500 and "content-security-policy" in answer.headers


def test_the_audit_page_refuses_a_cursor_beyond_any_id(web, admin):
    answer = admin.http.get("/admin/audit?before=99999999999999999999999")
    assert answer.status_code == 422 and "before" in answer.text


def _reads_of(hub: Hub, actor: str) -> list[tuple[str, str]]:
    with hub.app.state.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT action, target FROM audit WHERE actor = ? AND action LIKE '%.read'"
            " ORDER BY seq",
            (actor,),
        )
        return [tuple(r) for r in rows]


def test_web_reads_of_queries_and_runs_are_audited_like_the_apis(web, monkeypatch):
    monkeypatch.setattr(live, "LIFETIME", 0.2)
    reader = person(web, "auditee")
    pid = web.call("POST", "/projects", reader.token, json={"name": "audited"}).json()["id"]
    query = {"name": "q", "definition": {}}
    qid = web.call("POST", f"/projects/{pid}/queries", reader.token, json=query).json()["id"]
    task = {"hash": "ef" * 32, "kind": "k", "spec": {}}
    web.call("POST", f"/projects/{pid}/tasks", reader.token, json=task)
    body = {"task_hash": "ef" * 32, "rounds": 1}
    rid = web.call("POST", f"/projects/{pid}/runs", reader.token, json=body).json()["id"]
    for url in (
        f"/queries/{qid}",
        f"/queries/{qid}/events",
        f"/runs/{rid}",
        f"/runs/{rid}/events",
        f"/runs/{rid}/results.json",
    ):
        assert reader.http.get(url).status_code == 200, url
    query_read, run_read = ("query.read", f"query:{qid}"), ("run.read", f"run:{rid}")
    assert _reads_of(web, "user:auditee") == [query_read] * 2 + [run_read] * 3


def test_pages_are_never_cached_but_static_files_may_be(web, admin):
    for url in ("/signin", "/account", "/admin/users", "/projects"):
        assert admin.http.get(url).headers["cache-control"] == "no-store", url
    assert "no-store" not in admin.http.get("/static/flip.js").headers.get("cache-control", "")


def test_resetting_a_users_authenticator_ends_their_sessions(web, admin):
    victim = person(web, "lost-phone")
    assert victim.http.get("/account").status_code == 200
    with web.app.state.engine.connect() as conn:
        uid = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'lost-phone'").scalar()
    reset = admin.post(f"/admin/users/{uid}/mfa", {"admin_password": PASSWORD}, "/admin/users")
    assert reset.status_code == 303, reset.text
    assert victim.http.get("/account").headers["location"].startswith("/signin")


def test_a_one_time_password_must_be_replaced_at_the_first_sign_in(web, admin):
    one_time = _invite(admin, "once", "researcher")
    api = web.call("POST", "/login", json={"name": "once", "password": one_time})
    assert api.status_code == 403 and "one-time password" in api.json()["detail"]
    newcomer = Browser(web.app)
    newcomer.sign_in("once", one_time)
    kept_out = newcomer.http.get("/projects")
    assert kept_out.status_code == 303 and kept_out.headers["location"] == "/account?done=one-time"
    assert "one-time password" in newcomer.http.get("/account?done=one-time").text
    session = newcomer.http.cookies["flip_session"]
    bearer = web.call("POST", "/projects", session, json={"name": "made while one-time"})
    assert bearer.status_code == 403 and "one-time password" in bearer.json()["detail"]
    changed = newcomer.post(
        "/account/password", {"current_password": one_time, "password": PASSWORD}, "/account"
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/signin"
    newcomer.sign_in("once", PASSWORD)
    assert newcomer.http.get("/projects").status_code == 200


# ---- the role matrix over every web page ---------------------------------------------

ROLES = (
    "admin",
    "owner",
    "member",
    "researcher",
    "viewer",
    "stranger",
    "site_admin",
    "anonymous",
)
READERS = {"admin", "owner", "member", "viewer"}
WRITERS = {"admin", "owner", "member"}
SIGNED_IN = set(ROLES) - {"anonymous"}
#: Signed in with a hub role that reads projects (a site admin's work is in their console).
HUB_READERS = SIGNED_IN - {"site_admin"}

#: (method, path) -> the roles that get past sign-in, role and project checks.
WEB_MATRIX = {
    ("GET", "/"): set(ROLES),
    ("GET", "/signin"): set(ROLES),
    ("POST", "/signin"): set(ROLES),
    ("GET", "/signin/enrol"): set(),
    ("POST", "/signin/enrol"): set(),
    ("POST", "/signout"): SIGNED_IN,  # tested in the sign-in test: it ends the session
    ("GET", "/account"): SIGNED_IN,
    ("POST", "/account/password"): SIGNED_IN,
    ("POST", "/account/tokens"): SIGNED_IN,
    ("POST", "/account/tokens/{token_id}/revoke"): SIGNED_IN,
    ("GET", "/projects"): HUB_READERS,
    ("POST", "/projects"): {"admin", "owner", "member", "researcher"},
    ("GET", "/projects/{project_id}"): READERS,
    ("POST", "/projects/{project_id}/sites"): WRITERS,
    ("POST", "/projects/{project_id}/members"): {"admin", "owner"},
    ("GET", "/projects/{project_id}/cohort"): WRITERS,
    ("GET", "/projects/{project_id}/concepts"): WRITERS,
    ("POST", "/projects/{project_id}/queries"): WRITERS,
    ("GET", "/queries/{query_id}"): READERS,
    ("GET", "/queries/{query_id}/events"): READERS,
    ("POST", "/projects/{project_id}/runs"): WRITERS,
    ("GET", "/runs/{run_id}"): READERS,
    ("GET", "/runs/{run_id}/events"): READERS,
    ("POST", "/runs/{run_id}/status"): WRITERS,
    ("GET", "/runs/{run_id}/results.json"): READERS,
    ("GET", "/runs/{run_id}/certificate.json"): READERS,
    ("GET", "/admin/users"): {"admin"},
    ("POST", "/admin/users"): {"admin"},
    ("POST", "/admin/users/{user_id}/disable"): {"admin"},
    ("POST", "/admin/users/{user_id}/restore"): {"admin"},
    ("POST", "/admin/users/{user_id}/password"): {"admin"},
    ("POST", "/admin/users/{user_id}/mfa"): {"admin"},
    ("GET", "/admin/sites"): {"admin"},
    ("POST", "/admin/sites"): {"admin"},
    ("POST", "/admin/sites/{site_id}/disable"): {"admin"},
    ("POST", "/admin/sites/{site_id}/enrolment"): {"admin"},
    ("GET", "/admin/audit"): {"admin"},
    ("GET", "/projects/{project_id}/tasks/new"): WRITERS,
    ("GET", "/projects/{project_id}/tasks/review"): WRITERS,
    ("POST", "/projects/{project_id}/tasks/review"): WRITERS,
    ("POST", "/projects/{project_id}/tasks"): WRITERS,
    ("GET", "/models"): HUB_READERS,
    ("GET", "/quality"): HUB_READERS,
    ("GET", "/analyses/{analysis_id}"): READERS,
    ("GET", "/models/{model_id}"): READERS,
    ("GET", "/models/{model_id}/download"): READERS,
    ("POST", "/admin/users/{user_id}/role"): {"admin"},
    ("GET", "/admin/maintenance"): {"admin"},
    ("POST", "/admin/maintenance"): {"admin"},
    ("GET", "/request-account"): set(ROLES),
    ("POST", "/request-account"): set(ROLES),
    ("GET", "/admin/requests"): {"admin"},
    ("POST", "/admin/requests/{request_id}/approve"): {"admin"},
    ("POST", "/admin/requests/{request_id}/decline"): {"admin"},
}

#: Query strings of GET pages that need one.
QUERIES = {
    "/projects/{project_id}/tasks/review": "?builtin=mace-5y",
    "/models/{model_id}/download": "?format=torch",
}

FORMS = {
    "/signin": {"name": "nobody", "password": "x"},
    "/account/password": {"current_password": "wrong", "password": "short"},
    "/account/tokens": {"name": "t", "password": "wrong", "expires_in_days": "0"},
    "/projects": {"name": "p"},
    "/projects/{project_id}/sites": {"site": "matrix-site"},
    "/projects/{project_id}/members": {"user": "matrix-extra"},
    "/projects/{project_id}/queries": {"mode": "json", "definition": "{}"},
    "/projects/{project_id}/runs": {"task_hash": "cd" * 32, "rounds": "1"},
    "/runs/{run_id}/status": {"status_to": "cancelled"},
    "/admin/users": {"name": "m", "role": "no-such-role", "admin_password": "wrong"},
    "/admin/users/{user_id}/restore": {"admin_password": "wrong"},
    "/admin/users/{user_id}/password": {"admin_password": "wrong"},
    "/admin/users/{user_id}/mfa": {"admin_password": "wrong"},
    "/admin/sites": {"name": "matrix-new"},
    "/projects/{project_id}/tasks": {"spec": "{}", "task_hash": "00"},
    "/admin/users/{user_id}/role": {"role": "viewer", "admin_password": "wrong"},
    "/admin/maintenance": {"text": ""},
    "/request-account": {
        "name": "m-asker",
        "email": "asker@example.org",
        "organisation": "o",
        "reason": "r",
    },
    "/admin/requests/{request_id}/approve": {"role": "researcher", "admin_password": "wrong"},
}


def test_every_web_route_is_in_the_matrix(web):
    routers = (
        signin.router,
        account.router,
        projects_pages.router,
        concept_search.router,
        admin_pages.router,
        tasks_pages.router,
        models_pages.router,
        quality_pages.router,
        analyses_pages.router,
        joining.router,
    )
    routes = {
        (method, route.path)
        for router in routers
        for route in router.routes
        if isinstance(route, WebRoute)
        for method in route.methods
    }
    assert routes == set(WEB_MATRIX)


def test_each_role_is_allowed_or_denied_on_every_page_as_declared(
    web, admin, monkeypatch, tmp_path
):
    monkeypatch.setattr(live, "LIFETIME", 0.5)  # a live page's stream ends after one look
    browsers = {"admin": admin, "anonymous": Browser(web.app)}
    names = {"admin": "admin", "anonymous": "admin"}  # the anonymous try the admin's token
    for role, name, kind in (
        ("owner", "m-owner", "researcher"),
        ("member", "m-member", "researcher"),
        ("researcher", "m-outsider", "researcher"),
        ("viewer", "m-viewer", "viewer"),
        ("stranger", "m-stranger", "viewer"),
    ):
        browsers[role] = person(web, name, kind)
        names[role] = name
    web.site("m-admin-site")
    browsers["site_admin"] = person(web, "m-site-admin", "site_admin", site="m-admin-site")
    names["site_admin"] = "m-site-admin"
    owner = browsers["owner"]
    web.site("matrix-site")
    web.user("matrix-extra", "researcher")
    victim = web.call("POST", "/users", web.admin, json={"name": "m-victim", "role": "viewer"})
    site_id = web.call("POST", "/sites", web.admin, json={"name": "m-other"}).json()["id"]
    pid = web.call("POST", "/projects", owner.token, json={"name": "matrix"}).json()["id"]
    web.call(
        "POST", f"/projects/{pid}/members", owner.token, json={"users": ["m-member", "m-viewer"]}
    )
    web.call(
        "POST",
        f"/projects/{pid}/tasks",
        owner.token,
        json={"hash": "cd" * 32, "kind": "k", "spec": {}},
    )
    qid = web.call(
        "POST", f"/projects/{pid}/queries", owner.token, json={"name": "q", "definition": {}}
    ).json()["id"]
    own_tokens = _spare_tokens(web, names)
    with registry_at(web, tmp_path / "models"):
        _matrix(web, browsers, pid, qid, victim.json()["id"], site_id, owner, own_tokens)


def _spare_tokens(web, names: dict[str, str]) -> dict[str, int]:
    """For each role (its user's name), the id of a spare API token of its own."""
    out = {}
    for role, name in names.items():
        with web.app.state.engine.connect() as conn:
            uid = conn.exec_driver_sql("SELECT id FROM users WHERE name = ?", (name,)).scalar()
        with web.app.state.engine.begin() as conn:  # as the user makes it (only they may)
            out[role] = api_tokens.mint(conn, uid, f"m-{role}", 30).id
    return out


def _matrix(web, browsers, pid, qid, user_id, site_id, owner, own_tokens):
    model_id = registered_model(web, pid)
    asked = {"name": "m-queued", "email": "q@example.org", "organisation": "o", "reason": "r"}
    browsers["anonymous"].post("/request-account", asked, page="/request-account")
    request_id = queued_request(web, "m-queued")
    analysis = {"spec": {"kind": "table1"}}
    ids = {
        "analysis_id": web.call(
            "POST", f"/projects/{pid}/analyses", owner.token, json=analysis
        ).json()["id"],
        "project_id": pid,
        "query_id": qid,
        "user_id": user_id,
        "site_id": site_id,
        "model_id": model_id,
        "request_id": request_id,
    }
    # A fresh run for each request (one may stop it); made first, as the API token of a
    # user who revokes theirs on the account page stops working.
    body = {"task_hash": "cd" * 32, "rounds": 1}
    runs = [
        web.call("POST", f"/projects/{pid}/runs", owner.token, json=body).json()["id"]
        for _ in range(len(WEB_MATRIX) * len(ROLES))
    ]
    for (method, path), allowed in WEB_MATRIX.items():
        if path.startswith(("/signin", "/signout")) or path == "/":
            continue  # open to all, or ends the session: both tested above
        for role in ROLES:
            browser = browsers[role]
            run = runs.pop()
            url = path.format(**ids, run_id=run, token_id=own_tokens[role])
            url += QUERIES.get(path, "")
            if method == "GET":
                response = browser.http.get(url)
            else:
                response = browser.post(url, FORMS.get(path, {}), page="/signin")
            code = response.status_code
            signin = code == 303 and response.headers["location"].startswith("/signin")
            # A 403 for a wrong password means the caller got past the role check.
            refused = code == 403 and "password is wrong" not in response.text
            # A 404 for a certificate not made yet means the caller saw the run.
            hidden = code == 404 and "has no certificate" not in response.text
            denied = code == 401 or hidden or refused or signin
            assert code < 500, (method, path, role, response.text)
            if role in allowed:
                assert not denied, (method, path, role, code, response.text[:300])
            else:
                assert denied, (method, path, role, code)


def test_the_api_docs_load_everything_from_the_hub(web):
    browser = Browser(web.app)
    docs = browser.http.get("/docs")
    assert docs.status_code == 200 and "unsafe-eval" not in docs.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets)
    for asset in assets:
        assert browser.http.get(asset).status_code == 200, asset
    assert browser.http.get("/openapi.json").json()["info"]["title"] == "FLIP hub"


def test_a_query_with_no_site_to_answer_says_so_and_nothing_is_called_withheld(web):
    owner = person(web, "nora")
    pid = web.call("POST", "/projects", owner.token, json={"name": "alone"}).json()["id"]
    body = {"name": "q", "definition": {"name": "q", "include": []}}
    qid = web.call("POST", f"/projects/{pid}/queries", owner.token, json=body).json()["id"]
    page = owner.http.get(f"/queries/{qid}").text
    assert "No site is invited to this project" in page and "no site to answer" in page
    assert "withheld" not in page.split('id="total"')[1].split("</td>")[0]
