import subprocess
import sys

import pytest

from flip.fl.tasks import mace_task, task_hash


def test_hash_is_stable_across_processes_and_sensitive_to_config():
    here = task_hash(mace_task(0))
    code = "from flip.fl.tasks import mace_task, task_hash; print(task_hash(mace_task(0)))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here
    assert task_hash(mace_task(1)) != here
    assert task_hash(mace_task(0).model_copy(update={"learning_rate": 0.3})) != here


def test_rank_auroc_equals_sklearn_with_ties():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from flip.fl.tasks.binary import auroc

    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.3).astype(np.float32)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 2)
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert np.isnan(auroc(np.zeros(5), np.arange(5.0)))


def test_text_tasks_need_notes_and_hash_their_own_code():
    from pydantic import ValidationError

    from flip.fl.tasks import TaskSpec, mace_notes_task

    fused, notes = mace_notes_task("multimodal"), mace_notes_task("text-classifier")
    assert len({task_hash(fused), task_hash(notes), task_hash(mace_task())}) == 3
    without_notes = mace_task().model_dump() | {"kind": "multimodal"}
    with pytest.raises(ValidationError, match="reads notes"):
        TaskSpec.model_validate(without_notes)


def test_late_fusion_of_notes_and_features_beats_either_alone(tmp_path):
    from flip.data.cdm.store import open_store
    from flip.data.ingest import ingest_path
    from flip.fl.runtime.local import fit
    from flip.fl.tasks import mace_notes_task
    from flip.fl.tasks.base import load_splits
    from flip.fl.tasks.binary import evaluate
    from flip.synth import SiteProfile, generate_site
    from flip.synth.export import export_site

    profile = SiteProfile("lettered", 1500, "csv", age_mean=60, smoker_rate=0.2)
    folder = export_site(profile, generate_site(profile, 0), tmp_path / "export")
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "csv", folder)
    store.close()
    auroc = {}
    for spec in (mace_task(), mace_notes_task("text-classifier"), mace_notes_task("multimodal")):
        train, test = load_splits(str(tmp_path / "store.duckdb"), spec)
        auroc[spec.kind] = evaluate(fit(spec, train, 10 * spec.local_epochs), test)["auroc"]
    assert auroc["text-classifier"] > 0.7
    assert auroc["multimodal"] > max(auroc["tabular-logreg"], auroc["text-classifier"]) + 0.01
