import numpy as np
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.features import extract_tabular
from flip.data.ingest import ingest_path
from flip.fl.tasks import mace_task


def test_outcome_and_features_match_the_synthetic_truth(store, exported):
    _, patients, folder = exported("csv", n=80)
    ingest_path(store, "csv", folder)
    spec = mace_task().data
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
    data = extract_tabular(store, mace_task().data)
    train, test = data.split(0.25, seed=1)
    again, _ = data.split(0.25, seed=1)
    assert np.array_equal(train.person_ids, again.person_ids)
    assert len(test.y) == 30 and not set(train.person_ids) & set(test.person_ids)
