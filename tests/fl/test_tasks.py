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
