"""The hub's web app under careless input: an id that names nothing, a mistyped address, a
field no site could read; each is refused with a page in words, never a 500 or bare JSON."""

from tests.hub.test_web import PASSWORD


def test_resetting_the_second_factor_of_a_user_who_does_not_exist_is_a_404_page(web, admin):
    answer = admin.post("/admin/users/999999/mfa", {"admin_password": PASSWORD}, "/admin/users")
    assert answer.status_code == 404
    assert "no user 999999" in answer.text and "content-security-policy" in answer.headers
