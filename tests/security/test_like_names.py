"""Issue 19, item 12: a site name with SQL LIKE wildcards shows its admin only its own activity."""

from sqlalchemy import insert, select

from flip.hub.db import sites


def _site_admin(hub, site: str) -> str:
    body = {"name": f"admin-of-{site}".replace("%", "pct"), "role": "site_admin", "site": site}
    return hub.call("POST", "/users", hub.admin, json=body).json()["token"]


def test_wildcards_in_a_site_name_match_only_that_site(hub):
    researcher = hub.user("rita", "researcher")
    hub.site("site1")
    hub.site("site_")
    with hub.app.state.engine.begin() as conn:  # a name the API refuses, from an older hub
        conn.execute(insert(sites).values(name="%", status="active"))
        ids = dict(conn.execute(select(sites.c.name, sites.c.id)).all())
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    invited = hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["site1"]})
    assert invited.status_code == 200
    for name in ("site_", "%"):
        seen = hub.call("GET", f"/sites/{ids[name]}/activity", _site_admin(hub, name)).json()
        about = [e for e in seen["audit"] if e["action"] == "project.invite"]
        assert about == [], (name, about)
    own = hub.call("GET", f"/sites/{ids['site1']}/activity", hub.admin).json()
    assert [e["action"] for e in own["audit"]].count("project.invite") == 1
