"""User names are one name whatever their case: no twin ("Rita" beside "rita") can be made,
sign-in and member lists find a user by any case, and the password throttle counts every
case of a name against the one account. Nor can a site be registered beside its twin."""

from sqlalchemy import select

from flip.hub.db import users

PASSWORD = "correct horse battery"


def _create(hub, name: str, **body):
    json = {"name": name, "role": "researcher"} | body
    return hub.call("POST", "/users", hub.admin, json=json)


def _login(hub, name: str, password: str = PASSWORD):
    return hub.call("POST", "/login", json={"name": name, "password": password})


def test_a_name_that_differs_only_by_case_is_refused(hub):
    assert _create(hub, "rita").status_code == 201
    for twin in ("Rita", "RITA", "rItA"):
        refused = _create(hub, twin)
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"] == (
            f"user name {twin} is taken by rita: names must differ by more than case"
        )
    same = _create(hub, "rita")
    assert (same.status_code, same.json()["detail"]) == (409, "user rita exists")
    with hub.app.state.engine.connect() as conn:
        names = conn.execute(select(users.c.name).where(users.c.name_key == "rita")).scalars()
        assert list(names) == ["rita"]


def test_sign_in_takes_the_name_in_any_case(hub):
    assert _create(hub, "Rita", password=PASSWORD).status_code == 201
    for typed in ("Rita", "rita", "RITA"):
        session = _login(hub, typed)
        assert session.status_code == 200, session.text
        assert session.json()["name"] == "Rita"
    assert _login(hub, "rita", "wrong password!").status_code == 401


def test_wrong_passwords_count_against_the_account_whatever_the_case(hub):
    assert _create(hub, "Rita", password=PASSWORD).status_code == 201
    limit = hub.app.state.policy.account_failures
    cases = ["rita", "RITA", "rItA", "RiTa", "riTA", "rITa", "ritA"]
    for typed in cases[:limit]:
        assert _login(hub, typed, "wrong password!").status_code == 401
    assert _login(hub, "Rita").status_code == 429, "every case counted against one account"


def test_a_member_is_added_by_their_name_in_any_case(hub):
    researcher = hub.user("owner", "researcher")
    assert _create(hub, "Vera", role="viewer").status_code == 201
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    added = hub.call("POST", f"/projects/{pid}/members", researcher, json={"users": ["vera"]})
    assert added.status_code == 200, added.text
    assert added.json() == ["Vera"]


def test_a_site_name_that_differs_only_by_case_is_refused(hub):
    assert hub.call("POST", "/sites", hub.admin, json={"name": "north"}).status_code == 201
    twin = hub.call("POST", "/sites", hub.admin, json={"name": "North"})
    assert twin.status_code == 409
    assert twin.json()["detail"] == (
        "site name North is taken by north: names must differ by more than case"
    )
    same = hub.call("POST", "/sites", hub.admin, json={"name": "north"})
    assert (same.status_code, same.json()["detail"]) == (409, "site north exists")
