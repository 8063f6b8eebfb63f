"""The whole journey, as `flip demo` runs it, and what it leaves at the hub."""

import json
import re
import subprocess
import sys

import httpx
import pyotp
import pytest
from sqlalchemy import create_engine, inspect, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.demo.access import DemoAccess, instructions
from flip.demo.journey import DemoOptions, run_demo
from flip.demo.serve import describe, serve
from flip.synth import default_profiles


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(DemoOptions(out=out))


@pytest.mark.e2e
@pytest.mark.slow
def test_results_file_has_every_arm_for_every_site(demo):
    out, result = demo
    data = json.loads((out / "results.json").read_text())
    sites = [p.name for p in default_profiles(3)]
    assert set(data) == {"local", "federated", "pooled"}
    for arm in data.values():
        assert list(arm) == sites
        for metrics in arm.values():
            assert set(metrics) == {"auroc", "n_test"}
            assert metrics["n_test"] is None or metrics["n_test"] > 0
    # A site withholds its test size where it would single out persons against the cohort
    # counts released before (flip.data.cohort.sizes); the largest site has no reason to.
    assert data["federated"][sites[0]]["n_test"] > 0
    report = (out / "report.md").read_text()
    assert report.count("|") > 20
    for site, metrics in data["federated"].items():
        shown = "withheld" if metrics["n_test"] is None else str(metrics["n_test"])
        assert f"| {site} | {shown} |" in report
    assert (out / "auroc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.rounds) == 10


@pytest.mark.e2e
@pytest.mark.slow
def test_federation_works_everywhere_and_helps_the_small_site(demo):
    out, _ = demo
    data = json.loads((out / "results.json").read_text())
    for site, metrics in data["federated"].items():
        assert metrics["auroc"] > 0.7, site
    small = default_profiles(3)[-1].name
    assert data["federated"][small]["auroc"] > data["local"][small]["auroc"] + 0.02


@pytest.mark.e2e
@pytest.mark.slow
def test_hub_holds_no_person_level_value(demo):
    _out, result = demo
    identifiers: set[str] = set()
    for site_dir in result.site_dirs.values():
        store = open_store(site_dir / "store.duckdb", read_only=True)
        with store.connect() as conn:
            for row in conn.execute(select(schema.person)):
                identifiers.add(str(row.person_id))
                identifiers.add(row.person_source_value)
                identifiers.add(
                    f"{row.year_of_birth:04d}-{row.month_of_birth:02d}-{row.day_of_birth:02d}"
                )
        store.close()
    assert len(identifiers) > 4000
    engine = create_engine(f"sqlite:///{result.hub_database}")
    cells = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                cells.extend(str(v) for v in row if v is not None)
    assert cells
    blob = "\n".join(cells)
    leaked = sorted(i for i in identifiers if i in blob)
    assert leaked == []


@pytest.mark.e2e
@pytest.mark.slow
def test_counts_below_threshold_never_reach_the_hub(demo):
    _, result = demo
    seen_suppressed = False
    for query in result.queries:
        for released in query["results"].values():
            if released["suppressed"]:
                seen_suppressed = True
                assert released["count"] is None
            else:
                assert released["count"] == 0 or released["count"] >= released["threshold"]
    assert seen_suppressed


@pytest.mark.e2e
@pytest.mark.slow
def test_each_site_can_validate_the_registered_federated_model(demo):
    out, result = demo
    models = [p for p in (out / "models").iterdir() if p.is_dir()]
    (model_dir,) = [p for p in models if not p.name.startswith("mace-5y-best-")]
    (best_dir,) = [p for p in models if p.name.startswith("mace-5y-best-")]
    best = json.loads((best_dir / "lineage.json").read_text())
    assert best["final_model"] == model_dir.name and best["best_round"] >= 1
    assert all(len(s["data_sha256"]) == 64 for s in best["sites"].values())
    # A training size is released like a count, or withheld (left out) by the differencing
    # guard when it would single out persons against the cohort counts released before.
    assert all(s.get("n_train", 1) > 0 for s in best["sites"].values())
    store = str(result.site_dirs["riverside"] / "store.duckdb")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flip",
            "site",
            "evaluate",
            model_dir.name,
            "--store",
            store,
            "--registry",
            str(out / "models"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    validation = json.loads(done.stdout)
    assert validation["n"] == 300 and validation["auroc"] > 0.7


def _sign_in(http: httpx.Client, name: str, password: str) -> httpx.Response:
    form = http.get("/signin")
    assert form.status_code == 200
    (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', form.text)
    return http.post("/signin", data={"csrf": csrf, "name": name, "password": password})


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_opens_the_hub_and_each_console_to_the_printed_demo_sign_ins(demo):
    out, result = demo
    access = DemoAccess.load(out)
    assert access.researcher_password in instructions(out, access)
    served = serve(out)
    try:
        text = describe(served, out)
        assert set(served.urls) == {"hub", *result.site_dirs}
        with httpx.Client(base_url=served.urls["hub"], timeout=10.0) as hub:
            assert f"{served.urls['hub']}/" in text and access.researcher_password in text
            assert _sign_in(hub, "researcher", "not the demo password").status_code == 401
            answer = _sign_in(hub, "researcher", access.researcher_password)
            assert answer.status_code == 303 and answer.headers["location"] == "/signin/enrol"
            enrol = hub.get("/signin/enrol")
            (secret,) = re.findall(r'id="totp-secret">([A-Z2-7]+)<', enrol.text)
            (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', enrol.text)
            code = pyotp.TOTP(secret).now()
            assert hub.post("/signin/enrol", data={"csrf": csrf, "code": code}).status_code == 200
            assert hub.get("/projects").status_code == 200
        for site, (name, password) in access.consoles.items():
            with httpx.Client(base_url=served.urls[site], timeout=10.0) as console:
                assert f"{served.urls[site]}/" in text and password in text
                answer = _sign_in(console, name, password)
                assert answer.status_code == 303 and answer.headers["location"] == "/approvals"
                assert console.get("/approvals").status_code == 200
    finally:
        served.stop()
    assert all(p.poll() is not None for p in served.processes.values())
