"""Every site's export ingests through `flip site ingest` into counts equal to the ground truth,
with each letter stored as written (so the PHI spans of the truth fit it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import open_store

#: Ground-truth count -> the CDM table that must hold exactly that many rows.
TABLES = {
    "persons": "person",
    "conditions": "condition_occurrence",
    "measurements": "measurement",
    "drugs": "drug_exposure",
    "notes": "note",
    "images": "image_occurrence",
}


def _ingest(kind: str, path, store, site_config) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flip",
            "site",
            "ingest",
            kind,
            str(path),
            "--store",
            str(store),
            "--site-config",
            str(site_config),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_each_site_ingests_into_the_counts_of_its_ground_truth(tiny_world, tmp_path):
    out, written = tiny_world
    sites = {s["name"]: s for s in json.loads((out / "world.json").read_text())["sites"]}
    for w in written:
        store = tmp_path / f"{w.spec.name}.duckdb"
        for source in sites[w.spec.name]["ingest"]:
            report = _ingest(
                source["kind"], w.folder / source["path"], store, w.folder / "site.yaml"
            )
            assert report["quarantined"] == 0, report["rules"]
            assert not report["warnings"], report["warnings"]
        s = open_store(str(store), read_only=True)
        with s.connect() as conn:
            held = {
                name: conn.execute(
                    select(func.count()).select_from(getattr(schema, table))
                ).scalar()
                for name, table in TABLES.items()
            }
            notes = set(conn.execute(select(schema.note.c.note_text)).scalars())
        s.close()
        assert held == w.counts, w.spec.name
        truth = out / "truth" / w.spec.name / "letters_phi.jsonl"
        letters = {json.loads(line)["text"] for line in truth.read_text().splitlines()}
        assert notes == letters, f"{w.spec.name}: the PHI spans must fit the stored letters"
