"""The hub's web app under careless input: an id that names nothing, a mistyped address, a
field no site could read; each is refused with a page in words, never a 500 or bare JSON."""

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from flip.hub.db import queries
from tests.hub.test_web import PASSWORD, person
from tests.hub.web_client import Browser


def test_resetting_the_second_factor_of_a_user_who_does_not_exist_is_a_404_page(web, admin):
    answer = admin.post("/admin/users/999999/mfa", {"admin_password": PASSWORD}, "/admin/users")
    assert answer.status_code == 404
    assert "no user 999999" in answer.text and "content-security-policy" in answer.headers


def test_a_mistyped_address_or_a_wrong_method_is_a_page_in_words_and_the_api_keeps_json(web):
    browser = Browser(web.app)
    for path, method, code in (("/projcts", "GET", 404), ("/signout", "GET", 405)):
        answer = browser.http.request(method, path)
        assert answer.status_code == code
        assert answer.headers["content-type"].startswith("text/html"), answer.text
        assert (
            "<h1>" in answer.text
            and "script-src 'self'" in answer.headers["content-security-policy"]
        )
    assert browser.http.get("/signout").headers["allow"] == "POST"
    api = web.http.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        ("2020-13-45", "", "include-0 start: '2020-13-45' is not a date"),
        ("", "yesterday", "include-0 end: 'yesterday' is not a date"),
        ("2021-06-01", "2020-01-01", "include-0: the window starts after it ends"),
    ],
)
def test_a_date_window_no_site_could_read_is_refused_before_any_site_is_asked(
    web, start, end, said
):
    owner = person(web, f"dora-{len(start)}-{len(end)}")
    made = owner.post("/projects", {"name": "windows"}, page="/projects")
    pid = int(made.headers["location"].rsplit("/", 1)[1])
    form = {
        "include-0-table": "condition_occurrence",
        "include-0-concepts": "201826",
        "include-0-start": start,
        "include-0-end": end,
    }
    answer = owner.post(f"/projects/{pid}/queries", form, page=f"/projects/{pid}/cohort")
    assert answer.status_code == 422 and escape(said) in answer.text
    with web.app.state.engine.connect() as conn:
        asked = conn.execute(select(func.count()).where(queries.c.project_id == pid)).scalar()
    assert asked == 0, "no query reached the sites"


def test_a_form_the_server_cannot_parse_is_a_page_in_words(web):
    browser = Browser(web.app)
    fields = "&".join(f"f{i}=1" for i in range(1001))
    answer = browser.http.post(
        "/signin",
        content=f"csrf={browser.csrf()}&{fields}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    assert "Too many fields" in answer.text
