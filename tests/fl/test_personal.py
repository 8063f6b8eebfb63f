"""Personalised federation: what each site keeps (FedBN, FedPer, Ditto) and how it trains."""

import numpy as np
import pytest
import torch

from flip.data.features.tabular import TabularData
from flip.fl import personal


def _data(n=64, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, (n, 3)).astype(np.float32)
    y = (x[:, 0] - shift + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return TabularData(np.arange(n), x, y, ["a", "b", "c"])


def _config(mode, **extra):
    return {
        "personal": mode,
        "local-epochs": 3,
        "learning-rate": 0.1,
        "batch-size": 16,
        "l2": 0.0,
        "seed": 0,
        "server-round": 1,
        "ditto-lambda": 0.1,
        **extra,
    }


def test_fedbn_keeps_the_input_norm_and_fedper_the_last_layer():
    fedbn = personal.new_model("tabular-mlp", "fedbn", 3, 0)
    assert personal.own_keys(fedbn, "fedbn") == [
        "0.weight",
        "0.bias",
        "0.running_mean",
        "0.running_var",
        "0.num_batches_tracked",
    ]
    fedper = personal.new_model("tabular-mlp", "fedper", 3, 0)
    assert personal.own_keys(fedper, "fedper") == ["2.weight", "2.bias"]
    assert personal.own_keys(fedper, "ditto") == []
    plain = personal.new_model("tabular-logreg", "ditto", 3, 0)
    assert isinstance(plain, torch.nn.Linear), "only FedBN changes the model"


def test_a_batch_of_one_row_trains_under_fedbn():
    model = personal.new_model("tabular-logreg", "fedbn", 3, 0)
    model.train()
    assert model(torch.ones(1, 3)).shape == (1, 1)


def test_fedbn_site_keeps_its_own_statistics_across_rounds(tmp_path):
    path = tmp_path / "own.pt"
    data = _data(shift=5.0)
    model = personal.new_model("tabular-logreg", "fedbn", 3, 0)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    personal.before_train(model, "fedbn", path)
    from flip.fl.tasks import binary

    binary.train(model, data, epochs=2, learning_rate=0.1, batch_size=16, l2=0.0, seed=0)
    personal.after_train(model, sent, data, _config("fedbn"), path)
    kept = torch.load(path, weights_only=True)
    assert kept["0.running_mean"].mean() > 2, "the site's own feature shift"

    fresh = personal.new_model("tabular-logreg", "fedbn", 3, 0)
    personal.before_train(fresh, "fedbn", path)
    assert torch.equal(fresh.state_dict()["0.running_mean"], kept["0.running_mean"])
    assert torch.equal(fresh.state_dict()["1.weight"], sent["1.weight"]), "shared part is global"


@pytest.mark.parametrize("pull", [0.0, 5.0])
def test_ditto_trains_a_site_model_that_lambda_pulls_toward_the_global_one(tmp_path, pull):
    data = _data()
    model = personal.new_model("tabular-logreg", "ditto", 3, 0)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "own.pt"
    personal.after_train(model, sent, data, _config("ditto", **{"ditto-lambda": pull}), path)
    own = torch.load(path, weights_only=True)
    distance = float(sum(((own[k] - sent[k]) ** 2).sum() for k in sent))
    if pull:
        assert distance < 0.01, "a strong pull keeps the site's model at the global one"
    else:
        assert distance > 0.05, "no pull: the site's model goes its own way"
    site = personal.site_model(model, "ditto", path)
    assert all(torch.equal(site.state_dict()[k], own[k]) for k in own)
