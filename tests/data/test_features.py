import numpy as np
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.features import extract_raw, extract_tabular
from flip.data.ingest import ingest_path
from flip.fl.tasks import mace_task


def test_outcome_and_features_match_the_synthetic_truth(store, exported):
    _, patients, folder = exported("csv", n=80)
    ingest_path(store, "csv", folder)
    spec = mace_task(scaling="fixed").data
    data = extract_tabular(store, spec)
    with store.connect() as conn:
        rows = conn.execute(select(schema.person.c.person_id, schema.person.c.person_source_value))
        source = dict(rows.all())
    truth = {p.source_id: p for p in patients}
    assert len(data.y) == len(patients)
    smoker_col = data.feature_names.index("smoker")
    sbp_col = data.feature_names.index("systolic_bp")
    for pid, row, y in zip(data.person_ids, data.x, data.y, strict=True):
        p = truth[source[int(pid)]]
        assert bool(y) == p.mace
        assert (row[smoker_col] > 0) == p.smoker
        assert np.isclose(row[sbp_col] * 20 + 130, p.measurements["sbp"], atol=1e-3)


def test_split_is_stratified_and_repeatable(store, exported):
    _, _, folder = exported("fhir-ndjson", n=120)
    ingest_path(store, "fhir", folder)
    data = extract_raw(store, mace_task().data)
    train, test = data.split(0.25, seed=1)
    again, _ = data.split(0.25, seed=1)
    assert np.array_equal(train.person_ids, again.person_ids)
    assert len(test.y) == 30 and not set(train.person_ids) & set(test.person_ids)


def test_notes_become_an_embedding_after_the_features(store, exported):
    """Each person's letter is de-identified, then embedded, after the features."""
    from flip.data.features.text import embed
    from flip.data.notes.deid import deidentify
    from flip.fl.tasks import mace_modal_task

    _, patients, folder = exported("csv", n=40)
    ingest_path(store, "csv", folder)
    spec = mace_modal_task(images=False).data
    data = extract_raw(store, spec)
    n = len(spec.features)
    assert data.x.shape == (len(patients), spec.width) and data.feature_names[n] == "note_0"
    with store.connect() as conn:
        rows = conn.execute(select(schema.person.c.person_id, schema.person.c.person_source_value))
        source = dict(rows.all())
    truth = {p.source_id: p for p in patients}
    for pid, row in zip(data.person_ids, data.x, strict=True):
        letter = truth[source[int(pid)]].notes[0][1]
        assert np.array_equal(row[n:], embed([deidentify(letter)], spec.text.dims)[0])


def test_embedding_tells_negations_apart_and_is_the_same_everywhere():
    import subprocess
    import sys

    from flip.data.features.text import embed

    smoker, non_smoker = embed(["Current smoker."], 512), embed(["Non-smoker."], 512)
    assert not np.array_equal(smoker, non_smoker) and smoker.sum() == 3
    code = "from flip.data.features.text import embed; print(embed(['Denies chest pain.'], 64))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout == f"{embed(['Denies chest pain.'], 64)}\n"


def test_each_persons_radiograph_becomes_pixels_after_the_notes(store, exported):
    import pydicom

    from flip.data.features.image import pixels
    from flip.fl.tasks import mace_modal_task

    _, patients, folder = exported("fhir-ndjson", n=30)
    ingest_path(store, "fhir", folder)
    spec = mace_modal_task().data
    before = extract_raw(store, spec)
    start = len(spec.features) + spec.n_text
    assert before.x.shape[1] == spec.width and not before.x[:, start:].any(), "no images yet"
    report = ingest_path(store, "dicom", folder / "dicom")
    assert report.rows["image_occurrence"] == len(patients) and report.quarantined == 0
    data = extract_raw(store, spec)
    with store.connect() as conn:
        rows = conn.execute(select(schema.person.c.person_id, schema.person.c.person_source_value))
        source = dict(rows.all())
    for pid, row in zip(data.person_ids, data.x, strict=True):
        dcm = folder / "dicom" / f"{source[int(pid)]}.dcm"
        image = row[start:].reshape(spec.image.size, spec.image.size)
        assert np.allclose(image, pixels(str(dcm), spec.image.size))
        assert np.allclose(image * 255, pydicom.dcmread(dcm).pixel_array, atol=1e-3)
