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


@pytest.mark.parametrize("n", [0, 1, 2, 7, 300])
def test_average_ranks_equal_scipys_with_and_without_ties(n):
    import numpy as np
    from scipy.stats import rankdata

    from flip.fl.tasks.binary import average_ranks

    rng = np.random.default_rng(n)
    for values in (rng.random(n), rng.integers(0, 3, n).astype(np.float32), np.full(n, 0.5)):
        assert np.array_equal(average_ranks(values), rankdata(values))


def test_training_is_reproducible_and_learns():
    import numpy as np

    from flip.data.features.tabular import TabularData
    from flip.fl.tasks import binary
    from flip.fl.tasks.tabular_logreg import new_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.float32)
    data = TabularData(np.arange(203), x, y, [])
    settings = {"epochs": 3, "learning_rate": 0.5, "batch_size": 32, "l2": 0.0, "seed": 1}
    first, second = new_model(4, 0), new_model(4, 0)
    loss = binary.train(first, data, **settings)["loss"]
    assert binary.train(second, data, **settings)["loss"] == loss
    assert all(
        np.array_equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert loss < np.log(2)
    assert binary.evaluate(first, data)["auroc"] > 0.95


def test_modal_tasks_need_their_inputs_and_hash_their_own_code():
    from pydantic import ValidationError

    from flip.fl.tasks import TaskSpec, mace_modal_task

    kinds = ("multimodal", "text-classifier", "image-cnn")
    hashes = {task_hash(mace_modal_task(kind)) for kind in kinds} | {task_hash(mace_task())}
    assert len(hashes) == 4
    plain = mace_task().model_dump()
    for kind, message in [
        ("multimodal", "fuses notes or images"),
        ("text-classifier", "reads text"),
        ("image-cnn", "reads image"),
    ]:
        with pytest.raises(ValidationError, match=message):
            TaskSpec.model_validate(plain | {"kind": kind})


@pytest.mark.slow
def test_late_fusion_of_features_notes_and_image_beats_each_alone(tmp_path):
    from flip.data.cdm.store import open_store
    from flip.data.ingest import ingest_path
    from flip.fl.runtime.local import fit
    from flip.fl.tasks import mace_modal_task
    from flip.fl.tasks.base import load_splits
    from flip.fl.tasks.runner import evaluate_task
    from flip.synth import SiteProfile, generate_site
    from flip.synth.export import export_site

    profile = SiteProfile("lettered", 1500, "csv", age_mean=60, smoker_rate=0.2)
    folder = export_site(profile, generate_site(profile, 0), tmp_path / "export")
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "csv", folder)
    ingest_path(store, "dicom", folder / "dicom")
    store.close()
    auroc = {}
    for spec in (
        mace_task(),
        mace_modal_task("text-classifier", images=False),
        mace_modal_task("image-cnn", notes=False),
        mace_modal_task("multimodal"),
    ):
        train, test, _ = load_splits(str(tmp_path / "store.duckdb"), spec)
        state = fit(spec, train, 10 * spec.local_epochs)
        auroc[spec.kind] = evaluate_task(spec, state, test)["auroc"]
    assert auroc["text-classifier"] > 0.7 and auroc["image-cnn"] > 0.6
    alone = max(auroc["tabular-logreg"], auroc["text-classifier"], auroc["image-cnn"])
    assert auroc["multimodal"] > alone + 0.02


def test_train_loss_is_the_mean_over_every_example_whatever_the_last_batch():
    """With a learning rate of 0 the model stays put: the reported loss is the full-data loss."""
    import numpy as np
    import torch

    from flip.data.features.tabular import TabularData
    from flip.fl.tasks import binary

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1003, 4)).astype(np.float32)
    y = (rng.random(1003) > 0.6).astype(np.float32)
    model = torch.nn.Linear(4, 1)
    with torch.no_grad():
        full = torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.from_numpy(x)).squeeze(1), torch.from_numpy(y)
        )
    data = TabularData(np.arange(len(y)), x, y, [])
    metrics = binary.train(model, data, epochs=2, learning_rate=0.0, batch_size=64, l2=0.0, seed=0)
    assert metrics["loss"] == pytest.approx(float(full), rel=1e-5)
    assert metrics["num-examples"] == 1003
