"""`flip demo radiology`: head CTs in each hospital's real Orthanc, ingested over DICOMweb, read
over WADO-RS and de-identified at each site, a MONAI 3D network trained in Flower's simulation
runtime, and each site's AUROC in results.json."""

from __future__ import annotations

import json

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from flip.config import SiteConfig
from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ledger import Ledger
from flip.data.sources.orthanc import INSTALL_HINT, orthanc_binary
from flip.demo.radiology import RadiologyOptions, run_radiology
from flip.fl.tasks import task_hash
from flip.fl.tasks.catalog import head_ct_infarct_task
from tests.conftest import IN_CI

SITES = ["east", "north", "south"]


@pytest.mark.slow
@pytest.mark.orthanc
@pytest.mark.e2e
def test_head_cts_from_each_pacs_train_a_federated_3d_network(tmp_path):
    if orthanc_binary() is None:
        (pytest.fail if IN_CI else pytest.skip)(f"Orthanc is not installed ({INSTALL_HINT})")
    options = RadiologyOptions(out=tmp_path, rounds=2, people=40)
    results = run_radiology(options, Console(quiet=True))

    assert results == json.loads((tmp_path / "results.json").read_text())
    assert sorted(results["per_site"]) == SITES
    assert results["rounds"] == [], "8 validation rows a site: each declines round validation"
    for site, metrics in results["per_site"].items():
        assert metrics["n_test"] == 10 and metrics["n_train"] == 30, site
        assert 0.0 <= metrics["auroc"] <= 1.0, (site, metrics)
    digest = task_hash(head_ct_infarct_task())
    for site in SITES:
        config = SiteConfig.load(tmp_path / "sites" / site / "site.yaml")
        trained = [
            json.loads(e["detail"])
            for e in Ledger(config.ledger).entries()
            if e["action"] == "run.trained"
        ]
        assert trained and all(t["task_hash"] == digest for t in trained), site
        assert {t["round"] for t in trained} <= {1, 2}
        store = open_store(config.store, read_only=True)
        try:
            with store.connect() as conn:
                c = schema.image_occurrence.c
                rows = conn.execute(select(c.wadors_uri, c.local_path)).all()
        finally:
            store.close()
        assert rows and all(path is None and "/dicom-web/studies/" in uri for uri, path in rows)
    with pytest.raises(httpx.ConnectError):
        httpx.get(rows[0][0], timeout=5)  # the demo stopped its PACSs
