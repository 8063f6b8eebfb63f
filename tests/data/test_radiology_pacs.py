"""Head CTs in a real PACS (Orthanc): ingested over DICOMweb, read over WADO-RS at feature
time, de-identified before anything reads their pixels."""

import json

import numpy as np
import pytest
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.features import volume as volumes
from flip.data.features.tabular import extract_raw
from flip.data.features.volume import normalised, resized
from flip.data.ingest import ingest_path
from flip.data.sources.identity import PersonIdentity
from flip.fl.tasks.catalog import head_ct_infarct_task
from flip.synth.radiology import default_sites, draw_site, mrn_system, write_site
from tests.data.orthanc import orthanc_server

SLICES, SIZE = 8, 16


@pytest.mark.orthanc
@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
@pytest.mark.parametrize("storage", ["instances", "enhanced"])
def test_a_pacs_series_reaches_training_as_a_deidentified_volume(
    store, tmp_path, storage, monkeypatch
):
    site = next(s for s in default_sites(2, people=6) if s.storage == storage)
    written = write_site(tmp_path / "world", site, seed=4, slices=SLICES, size=SIZE)
    studies = {s.mrn: s for s in draw_site(site, 4, SLICES, SIZE)}
    identity = PersonIdentity(mrn_system(site.name))
    ingest_path(store, "fhir", written.folder / "fhir", person_identifier=identity)
    with orthanc_server(tmp_path / "orthanc") as pacs:
        pacs.upload_all(sorted((written.folder / "dicom").rglob("*.dcm")))
        report = ingest_path(store, "dicom", None, url=pacs.dicomweb, person_identifier=identity)
        assert report.quarantined == 0
        with store.connect() as conn:
            rows = conn.execute(
                select(schema.image_occurrence.c.wadors_uri, schema.image_occurrence.c.local_path)
            ).all()
            instances = conn.execute(select(func.count()).select_from(schema.image_instance))
            assert instances.scalar() == (SLICES - 1) * len(studies) * (storage == "instances")
        assert len(rows) == len(studies)
        assert all(uri.startswith(pacs.dicomweb) and path is None for uri, path in rows)

        seen = []
        real_stack = volumes.stack
        monkeypatch.setattr(
            volumes, "stack", lambda objects: seen.append(objects) or real_stack(objects)
        )
        spec = head_ct_infarct_task().data.model_copy(
            update={
                "image": head_ct_infarct_task().data.image.model_copy(
                    update={"depth": 4, "size": 8}
                )
            }
        )
        data = extract_raw(store, spec)

    truth = json.loads((tmp_path / "world" / "truth" / f"{site.name}.json").read_text())
    with store.connect() as conn:
        mrn = dict(
            conn.execute(
                select(schema.person.c.person_id, schema.person.c.person_source_value)
            ).all()
        )
    assert sorted(mrn[p] for p in data.person_ids) == sorted(studies), "one row per study"
    assert [truth[mrn[p]]["infarct"] for p in data.person_ids] == [bool(v) for v in data.y]
    for row, pid in enumerate(data.person_ids):
        expected = resized(
            normalised(np.clip(np.rint(studies[mrn[pid]].volume), -1024, 3071), spec.image.window),
            4,
            8,
        )
        np.testing.assert_allclose(data.x[row, 2:], expected.reshape(-1), atol=1e-5)

    assert len(seen) == len(studies), "every series was read through the de-identifier"
    source = (
        [
            value
            for s in studies.values()
            for value in (
                s.mrn,
                s.name,
                s.name.split("^")[0],
                s.birth.strftime("%Y%m%d"),
                s.day.strftime("%Y%m%d"),
            )
        ]
        + [site.institution]
        + [uri.split("/studies/")[1].split("/")[0] for uri, _ in rows]
    )
    for objects in seen:
        for ds in objects:
            assert ds.PatientIdentityRemoved == "YES"
            text = ds.to_json() + str(ds.file_meta)
            assert not [value for value in source if value in text]
