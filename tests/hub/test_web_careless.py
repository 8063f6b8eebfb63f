"""The hub's web app under careless input: an id that names nothing, a mistyped address, a
field no site could read; each is refused with a page in words, never a 500 or bare JSON."""

from tests.hub.test_web import PASSWORD
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
