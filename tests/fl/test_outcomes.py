"""Each outcome trains on its own loss and is measured by its own metrics, against references."""

import numpy as np
import pytest
import torch

from flip.data.features.tabular import TabularData
from flip.fl.tasks import outcomes, training
from flip.fl.tasks.tabular_logreg import new_model

SETTINGS = {"learning_rate": 0.5, "batch_size": 64, "l2": 0.0, "seed": 1}


def _data(x: np.ndarray, y: np.ndarray) -> TabularData:
    return TabularData(np.arange(len(x)), x.astype(np.float32), y.astype(np.float32), [])


def test_cox_training_finds_lifelines_coefficients_and_c_index():
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    hazard = np.exp(x @ np.array([0.8, -0.5, 0.0]))
    event_time = rng.exponential(1 / hazard)
    censor = rng.exponential(1.5, size=400)
    time, event = np.minimum(event_time, censor), (event_time <= censor).astype(float)
    data = _data(x, np.column_stack([time, event]))
    model = new_model(3, 0)
    full_batch = {**SETTINGS, "batch_size": 400, "learning_rate": 1.0}
    training.train(model, data, epochs=300, outcome="time-to-event", **full_batch)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(time=time, event=event)
    reference = CoxPHFitter().fit(frame, "time", "event").params_.to_numpy()
    assert model.weight.detach().numpy().ravel() == pytest.approx(reference, abs=0.01)
    risk = training.predict(model, data.x, "time-to-event")
    metrics = outcomes.metrics("time-to-event", risk, data.y)
    assert metrics["c_index"] == pytest.approx(concordance_index(time, -risk, event))
    assert metrics["c_index"] > 0.65


def test_cox_loss_counts_tied_times_in_each_others_risk_sets():
    risk = torch.tensor([0.3, -0.2, 1.0, 0.1])
    time = torch.tensor([2.0, 2.0, 1.0, 3.0])
    event = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # Breslow: both events at t=2 share the risk set {0, 1, 3}; the one at t=1 has everyone.
    at_two = np.log(np.exp(0.3) + np.exp(-0.2) + np.exp(0.1))
    at_one = np.log(np.exp([0.3, -0.2, 1.0, 0.1]).sum())
    expected = -((0.3 - at_two) + (-0.2 - at_two) + (1.0 - at_one)) / 3
    assert float(outcomes.cox_loss(risk, time, event)) == pytest.approx(expected, rel=1e-6)
    assert float(outcomes.cox_loss(risk, time, torch.zeros(4))) == 0.0


def test_multiclass_trains_a_softmax_and_reports_sklearns_metrics():
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    rng = np.random.default_rng(1)
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, 600)
    x = centres[y] + rng.normal(size=(600, 2))
    data = _data(x, y)
    model = new_model(2, 0, n_outputs=3)
    training.train(model, data, epochs=20, outcome="multiclass", **SETTINGS)
    p = training.predict(model, data.x, "multiclass")
    metrics = outcomes.metrics("multiclass", p, data.y)
    assert (
        metrics["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)))
        and metrics["accuracy"] > 0.85
    )
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    assert metrics["loss"] == pytest.approx(log_loss(y, p), rel=1e-4)
    assert outcomes.selection_score(metrics) == metrics["macro_f1"]


def test_regression_learns_a_line_and_reports_sklearns_metrics():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 2))
    y = 3 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=500)
    data = _data(x, y)
    model = new_model(2, 0)
    training.train(
        model, data, epochs=30, outcome="regression", **{**SETTINGS, "learning_rate": 0.1}
    )
    p = training.predict(model, data.x, "regression")
    metrics = outcomes.metrics("regression", p, data.y)
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(data.y, p)), rel=1e-5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(data.y, p), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(data.y, p), rel=1e-5) and metrics["r2"] > 0.99
    assert outcomes.selection_score(metrics) == -metrics["rmse"]


@pytest.mark.parametrize("kind", ["tabular-mlp", "text-classifier", "image-cnn", "multimodal"])
def test_every_kind_has_a_head_per_class(kind):
    from flip.fl.tasks import TaskSpec, mace_modal_task, mace_task
    from flip.fl.tasks.models import new_model as task_model

    base = mace_task() if kind == "tabular-mlp" else mace_modal_task(kind)
    classes = [{"name": "mi", "concept_ids": [1]}, {"name": "stroke", "concept_ids": [2]}]
    data = {**base.data.model_dump(), "outcome": "multiclass", "outcome_concept_ids": []}
    spec = TaskSpec.model_validate(
        {**base.model_dump(), "kind": kind, "data": {**data, "outcome_classes": classes}}
    )
    model = task_model(spec)
    x = torch.zeros(4, spec.data.width)
    assert model(x).shape == (4, 3)


def test_the_site_trains_on_a_gpu_when_it_has_one_and_else_on_the_cpu():
    choose = training.choose_device
    assert choose("auto", lambda: False) == torch.device("cpu")
    assert choose("auto", lambda: True) == torch.device("cuda")
    assert choose("cuda:1", lambda: True) == torch.device("cuda:1")
    assert choose("cpu", lambda: True) == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        choose("cuda", lambda: False)
    with pytest.raises(ValueError, match="use auto, cpu"):
        choose("tpu", lambda: True)
    assert choose() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
def test_a_time_to_event_task_federates_and_agrees_with_lifelines_on_pooled_data(tmp_path):
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    from flip.config import SiteConfig
    from flip.data.ledger import Ledger
    from flip.fl.runtime.simulation import simulate
    from flip.fl.server import task_server_app
    from flip.fl.tasks import TaskSpec, mace_task, task_hash
    from flip.fl.tasks.base import load_raw_splits
    from tests.conftest import build_site

    base = mace_task()
    data = {**base.data.model_dump(), "outcome": "time-to-event"}
    spec = TaskSpec.model_validate({**base.model_dump(), "data": data, "rounds": 3})
    digest = task_hash(spec)
    configs = []
    for name, fmt in (("alpha", "csv"), ("beta", "fhir-ndjson")):
        path = build_site(tmp_path, name, fmt, 200)
        Ledger(SiteConfig.load(path).ledger).decide("p", digest, "approved", by="admin")
        configs.append(path)
    app, result = task_server_app("p", spec, rounds=3, n_sites=2)
    simulate(app, configs)
    assert set(result.per_site) == {"alpha", "beta"}
    for metrics in result.per_site.values():
        assert "auroc" not in metrics and metrics["c_index"] > 0.65
    assert all("c_index" in r for r in result.rounds) and result.best_round is not None

    splits = [load_raw_splits(SiteConfig.load(path).store, spec) for path in configs]
    train, test = ([result.scaling.apply(s[part]) for s in splits] for part in (0, 1))
    x, y = np.concatenate([d.x for d in train]), np.concatenate([d.y for d in train])
    assert 0 < y[:, 1].sum() < len(y), "the pooled training rows hold events and censored rows"
    columns = [f"x{i}" for i in range(x.shape[1])]
    frame = pd.DataFrame(x, columns=columns).assign(time=y[:, 0], event=y[:, 1])
    pooled = CoxPHFitter().fit(frame, "time", "event").params_.to_numpy()
    federated = result.state_dict["weight"].numpy().ravel()
    x_test, y_test = np.concatenate([d.x for d in test]), np.concatenate([d.y for d in test])
    c_pooled = concordance_index(y_test[:, 0], -(x_test @ pooled), y_test[:, 1])
    c_federated = concordance_index(y_test[:, 0], -(x_test @ federated), y_test[:, 1])
    assert c_federated > 0.7 and abs(c_federated - c_pooled) < 0.03
    assert np.corrcoef(x_test @ federated, x_test @ pooled)[0, 1] > 0.9
