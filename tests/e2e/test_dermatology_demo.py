"""`flip demo dermatology` on a tiny world: the federation runs on Flower with each site's
ClientApp training only after its own ledger approved the task; results.json in the issue's
shape with numbers the run computed, and a report.html that needs nothing outside itself."""

from __future__ import annotations

import base64
import csv
import json
import math
import re

import httpx
import orjson
import pytest
import torch
from rich.console import Console
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.data.sources.orthanc import orthanc_binary
from flip.demo.dermatology.journey import DermatologyOptions, run_dermatology
from flip.fl.tasks.dermatology import skin_network
from tests.conftest import IN_CI

ARMS = {"local", "federated", "pooled"}
SITES = ["st-aster", "northbridge"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dermatology-demo")
    # Pretrained weights of the photograph network, as a site admin would hold them.
    torch.manual_seed(5)
    torch.save(skin_network().state_dict(), out / "skin.pt")
    # One local epoch a round: every arm trains MiniLM's LoRA on CPU, so this keeps it short.
    options = DermatologyOptions(
        sites=2,
        out=out,
        rounds=2,
        local_epochs=1,
        people=(44, 36),
        seed=3,
        image_weights=out / "skin.pt",
    )
    return out, run_dermatology(options, Console(quiet=True))


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.slow
def test_results_json_has_the_issues_shape_with_finite_numbers(run):
    out, result = run
    results = orjson.loads((out / "results.json").read_bytes())
    assert results == result.results
    assert set(results) == {"biomarker", "response", "fairness", "bytes_per_round"}
    for arm in ARMS:
        assert list(results["biomarker"][arm]) == SITES
        assert list(results["response"][arm]) == SITES
        for site in SITES:
            bio = results["biomarker"][arm][site]
            assert set(bio) == {"mae", "icc", "n_test"}
            assert _finite(bio["mae"]) and bio["mae"] >= 0
            assert bio["icc"] is None or -1 <= bio["icc"] <= 1
            assert isinstance(bio["n_test"], int) and bio["n_test"] > 0
            resp = results["response"][arm][site]
            assert set(resp) == {"auroc", "n_test"}
            assert resp["auroc"] is None or 0 <= resp["auroc"] <= 1
            assert isinstance(resp["n_test"], int) and resp["n_test"] > 0
    assert set(results["fairness"]) == set(SITES)
    lora, full = results["bytes_per_round"]["lora"], results["bytes_per_round"]["full"]
    assert 0 < lora < 0.05 * full


@pytest.mark.slow
@pytest.mark.orthanc
def test_the_pacs_site_reads_its_photographs_from_orthanc_over_dicomweb(run):
    if orthanc_binary() is None:
        (pytest.fail if IN_CI else pytest.skip)("Orthanc is not installed: files were read")
    out, result = run
    store = open_store(out / "sites" / "northbridge" / "store.duckdb", read_only=True)
    try:
        with store.connect() as conn:
            c = schema.image_occurrence.c
            rows = conn.execute(select(c.wadors_uri, c.local_path)).all()
    finally:
        store.close()
    assert rows, "the PACS site has photographs"
    assert all(p is None and u.startswith("http://127.0.0.1:") for u, p in rows), rows[:2]
    assert "/dicom-web/studies/" in rows[0][0]
    assert result.results["biomarker"]["federated"]["northbridge"]["n_test"] > 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(rows[0][0], timeout=5)  # the demo stopped its Orthanc


@pytest.mark.slow
def test_numbers_are_computed_from_the_sites_test_rows(run):
    out, result = run
    results = result.results
    for site in SITES:
        fed = results["biomarker"]["federated"][site]
        by_type = results["fairness"][site]
        assert set(by_type) <= {"I", "II", "III", "IV", "V", "VI"}
        # The skin-type groups partition the site's test photographs, and their errors
        # average (weighted by n) to the site's error.
        assert sum(g["n"] for g in by_type.values()) == fed["n_test"]
        weighted = sum(g["mae"] * g["n"] for g in by_type.values()) / fed["n_test"]
        assert weighted == pytest.approx(fed["mae"], abs=2e-3)
        # Test photographs are those of psoriasis patients in the ground truth.
        with (out / "world" / "truth" / site / "photos.csv").open() as handle:
            psoriasis = sum(row["diagnosis"] == "psoriasis" for row in csv.DictReader(handle))
        assert fed["n_test"] < psoriasis
    maes = {(arm, site): results["biomarker"][arm][site]["mae"] for arm in ARMS for site in SITES}
    assert len(set(maes.values())) > 1, "every arm at every site scored alike"


@pytest.mark.slow
def test_report_is_self_contained_with_its_figures(run):
    out, _ = run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 6
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    for name in ("overview", "roc", "calibration", "bland_altman", "fairness", "learning"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_each_site_trained_both_models_on_flower_after_its_own_approval(run):
    out, _ = run
    for site in SITES:
        entries = Ledger(str(out / "sites" / site / "ledger.sqlite")).entries()
        actions = [e["action"] for e in entries]
        added = [json.loads(e["detail"])["name"] for e in entries if e["action"] == "model.added"]
        # The site's own copies of MiniLM and of the photograph network's weights.
        assert set(added) == {"all-MiniLM-L6-v2", "skin-resnet10"}
        assert "model.refused" not in actions
        approved = actions.index("task.approved")
        trained = [
            (i, json.loads(e["detail"]))
            for i, e in enumerate(entries)
            if e["action"] == "run.trained"
        ]
        assert all(i > approved for i, _ in trained)
        # Flower samples the sites connected at a round's start: a site may sit one out.
        rounds = {(t["model"], t["round"]) for _, t in trained}
        assert {m for m, _ in rounds} == {"biomarker", "response"}
        assert rounds <= {(m, r) for m in ("biomarker", "response") for r in (1, 2)}
        assert all(t["n_train"] > 0 for _, t in trained)
