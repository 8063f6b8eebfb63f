"""The network data-quality page: sites' released aggregates side by side, readers only."""

from sqlalchemy import insert, select

from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.data.validate.released import quality_release
from flip.hub.db import site_quality, sites
from tests.hub.test_web import person


def _release(web, name: str, store_path) -> dict:
    store = open_store(store_path, read_only=True)
    try:
        report = quality_release(store, 10)
    finally:
        store.close()
    answer = web.call("POST", "/agent/quality", web.site(name), json={"report": report})
    assert answer.status_code == 204, answer.text
    return report


def test_the_quality_page_shows_each_sites_release_side_by_side(web, exported, tmp_path):
    _, _, folder = exported("fhir-bundle", n=40)
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    reader = person(web, "quinn", "viewer")
    empty = reader.http.get("/quality")
    assert empty.status_code == 200 and "No site has released" in empty.text
    report = _release(web, "dq-north", tmp_path / "store.duckdb")
    _release(web, "dq-south", tmp_path / "store.duckdb")
    page = reader.http.get("/quality")
    assert page.status_code == 200
    assert "dq-north" in page.text and "dq-south" in page.text
    assert "Completeness per field" in page.text and "person.year_of_birth" in page.text
    first = report["checks"][0]
    assert (
        f"{first['status']}: {first['failed']} of {first['checked']}".replace("<", "&lt;")
        in page.text
    )
    api = web.call("GET", "/quality", reader.token).json()["sites"]
    assert api["dq-north"]["report"] == report
    assert web.call("GET", "/quality", web.site("dq-east")).status_code == 403


def test_a_harmonisation_report_shows_each_sites_source_codes_on_the_analysis_page(
    web, exported, tmp_path
):
    from flip.data.features.harmonisation import HarmonisationSpec, harmonisation_release

    _, _, folder = exported("fhir-bundle", n=40)
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    owner = person(web, "hana")
    site = web.site("hm-west")
    pid = web.call("POST", "/projects", owner.token, json={"name": "harmonise"}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": ["hm-west"]})
    spec = HarmonisationSpec(concept_ids=[3004249, 3004410])
    made = web.call("POST", f"/projects/{pid}/analyses", owner.token, json={"spec": spec.body()})
    aid = made.json()["id"]
    waiting = owner.http.get(f"/analyses/{aid}")
    assert waiting.status_code == 200 and "waiting" in waiting.text
    assert spec.digest() in waiting.text, "the page names the hash a site approves"
    store = open_store(tmp_path / "store.duckdb", read_only=True)
    try:
        released = harmonisation_release(store, spec, 5)
    finally:
        store.close()
    body = {"round": 0, "release": released}
    assert web.call("POST", f"/agent/analyses/{aid}", site, json=body).status_code == 204
    shown = owner.http.get(f"/analyses/{aid}")
    assert "completed" in shown.text and "Rows mapped to each concept" in shown.text
    codes = released["concepts"]["3004249"]["sources"]
    assert codes and all(code in shown.text for code in codes)
    listed = owner.http.get(f"/projects/{pid}")
    assert f"/analyses/{aid}" in listed.text
    outsider = person(web, "omar")
    assert outsider.http.get(f"/analyses/{aid}").status_code == 404


def test_a_malformed_release_is_refused_and_one_kept_from_before_breaks_no_page(
    web, exported, tmp_path
):
    _, _, folder = exported("fhir-bundle", n=40)
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    _release(web, "dq-good", tmp_path / "store.duckdb")
    bad = web.site("dq-bad")
    good = _release(web, "dq-also-good", tmp_path / "store.duckdb")
    for broken, field in (
        ({"checks": "oops"}, ["body", "report", "checks"]),
        ({"min_cell": None}, ["body", "report", "min_cell"]),
        ({"checks": [{"name": 3}]}, ["body", "report", "checks", 0, "name"]),
        ({"completeness": {"person.year_of_birth": {"rows": "ten"}}}, None),
    ):
        answer = web.call("POST", "/agent/quality", bad, json={"report": good | broken})
        assert answer.status_code == 422, answer.text
        if field is not None:
            assert answer.json()["detail"][0]["loc"] == field, answer.text
    # A report an earlier hub kept without looking (or a site's future shape).
    with web.app.state.engine.begin() as conn:
        site_id = conn.execute(select(sites.c.id).where(sites.c.name == "dq-bad")).scalar_one()
        conn.execute(insert(site_quality).values(site_id=site_id, report='{"checks": "oops"}'))
    reader = person(web, "quentin", "viewer")
    page = reader.http.get("/quality")
    assert page.status_code == 200, page.text[:300]
    assert "dq-good" in page.text and "person.year_of_birth" in page.text
    assert "dq-bad" in page.text and "cannot be read" in page.text


def test_a_release_with_a_withheld_part_is_taken_and_shown_withheld(web, exported, tmp_path):
    """A site withholds a part whose rest is a small count (and a check's failed rows when
    the passed ones are few): the hub takes the release and shows them withheld."""
    _, _, folder = exported("fhir-bundle", n=40)
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder)
    try:
        report = quality_release(store, 10)
    finally:
        store.close()
    report["completeness"]["person.year_of_birth"] |= {"part": None, "share": None}
    report["checks"][0]["failed"] = None
    answer = web.call("POST", "/agent/quality", web.site("dq-held"), json={"report": report})
    assert answer.status_code == 204, answer.text
    page = person(web, "wanda", "viewer").http.get("/quality")
    assert "withheld (withheld of 40)" in page.text
    assert f"{report['checks'][0]['status']}: withheld of" in page.text
