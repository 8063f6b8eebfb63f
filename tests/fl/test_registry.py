"""The model registry: content-addressed ids, lineage, model card, torch and ONNX export."""

import onnx
import pytest
import torch

from flip.fl.registry import (
    RegistryError,
    build,
    export,
    list_models,
    load,
    model_card,
    register,
)
from flip.fl.tasks.tabular_logreg import new_model

LINEAGE = {
    "task": "tabular-logreg",
    "n_features": 3,
    "seed": 0,
    "strategy": "fedavg",
    "rounds": 5,
    "local_epochs": 2,
    "sites": {"a": {"n_train": 30, "n_test": 10, "data_sha256": "ab" * 32}},
    "metrics": {
        "per_site": {"a": {"accuracy": 0.8, "auroc": 0.75, "n_test": 10}},
        "overall": {"accuracy": 0.8, "auroc": 0.75},
    },
}


def test_same_weights_same_id_and_a_card_from_the_lineage(tmp_path):
    model = new_model(3, 0)
    with torch.no_grad():
        model.weight += 0.5
    first = register(tmp_path, "risk", model.state_dict(), LINEAGE)
    again = register(tmp_path, "risk", model.state_dict(), LINEAGE)
    assert first.id == again.id and first.id.startswith("risk-")
    assert [r.id for r in list_models(tmp_path)] == [first.id]
    card = (first.path / "MODEL_CARD.md").read_text()
    assert (
        "| a | 30 | 10 |" in card
        and "| a | 0.800 | 0.750 |" in card
        and "fedavg for 5 rounds" in card
    )
    rebuilt = build(load(tmp_path, first.id))
    x = torch.ones(2, 3)
    assert torch.allclose(rebuilt(x), model(x))
    with pytest.raises(RegistryError, match="no model"):
        load(tmp_path, "risk-000000000000")


def test_export_torch_and_onnx(tmp_path):
    record = register(tmp_path / "reg", "risk", new_model(3, 0).state_dict(), LINEAGE)
    state = torch.load(export(record, "torch", tmp_path / "m.pt"), weights_only=True)
    assert set(state) == {"weight", "bias"}
    graph = onnx.load(str(export(record, "onnx", tmp_path / "m.onnx")))
    assert [i.name for i in graph.graph.input] == ["features"]
    with pytest.raises(RegistryError, match="unknown export format"):
        export(record, "pickle", tmp_path / "m.pkl")


def test_a_run_registers_its_final_model_and_its_best_rounds_with_the_best_named_after_it(
    tmp_path,
):
    from flip.fl.registry import register_with_best
    from flip.fl.server import FederatedResult

    result = FederatedResult(rounds=[{"auroc": 0.7}, {"auroc": float("nan")}, {"auroc": 0.8}])
    assert result.is_best(1) and not result.is_best(2) and not result.is_best(4)
    result.best_round = 3
    assert not result.is_best(1), "a tie or worse does not replace the best"
    final_state = {"w": torch.ones(2)}
    best_state = {"w": torch.zeros(2)}
    final, best = register_with_best(tmp_path, "m", final_state, {"task": "x"}, 3, best_state)
    assert best.lineage["final_model"] == final.id and best.lineage["best_round"] == 3
    assert "round 3" in (best.path / "MODEL_CARD.md").read_text()
    assert torch.equal(torch.load(best.path / "model.pt")["w"], best_state["w"])
    alone, none = register_with_best(tmp_path, "n", final_state, {"task": "x"}, None, {})
    assert none is None and {r.id for r in list_models(tmp_path)} == {final.id, best.id, alone.id}


def test_a_regression_models_card_shows_its_own_metrics_and_what_a_site_withheld():
    """The performance table follows the metrics the run reported (a model without accuracy
    made the card fail); a count or metric a site did not release reads "withheld"."""
    lineage = {
        **LINEAGE,
        "name": "severity",
        "id": "severity-1",
        "sha256": "cd" * 32,
        "registered_at": "2026-12-05T00:00:00Z",
        "sites": {"a": {"n_train": 30, "n_test": 10}, "b": {"n_train": None, "n_test": None}},
        "metrics": {
            "per_site": {"a": {"mae": 1.25, "r2": 0.5, "n_test": 10}, "b": {"mae": 2.0}},
            "overall": {"mae": 1.5, "r2": 0.4},
        },
    }
    card = model_card(lineage)
    assert "| site | mae | r2 |" in card
    assert "| a | 1.250 | 0.500 |" in card and "| b | 2.000 | withheld |" in card
    assert "| **all sites** | 1.500 | 0.400 |" in card
    assert "| b | withheld | withheld | `` |" in card
