"""A model's ONNX export is made once per weights and lineage, kept under the registry, and
made again when either changes (a model re-registered under its id)."""

import onnx
import torch

from flip.fl import registry as fl_registry
from flip.hub import models
from tests.hub.web_world import PER_SITE


def _register(folder) -> str:
    from flip.fl.registry import federated_lineage, register
    from flip.fl.tasks.catalog import mace_task
    from flip.fl.tasks.models import new_model

    spec = mace_task()
    lineage = federated_lineage(spec, rounds=1, per_site=PER_SITE, round_metrics=[], project=1)
    return register(folder, "m", new_model(spec).state_dict(), lineage).id


def test_an_onnx_export_is_kept_and_made_again_only_when_the_model_changes(tmp_path, monkeypatch):
    made = []

    def counted(record, fmt, out):
        made.append(record.id)
        return real(record, fmt, out)

    real = fl_registry.export
    monkeypatch.setattr(fl_registry, "export", counted)
    model_id = _register(tmp_path)
    first = models.export_bytes(tmp_path, model_id, "onnx")
    again = models.export_bytes(tmp_path, model_id, "onnx")
    assert first == again and made == [model_id], "the second download reads the kept export"
    onnx.checker.check_model(onnx.load_from_string(first))
    kept = list((tmp_path / models.EXPORTS / model_id).iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == first
    assert [m["id"] for m in models.lineages(tmp_path)] == [model_id], "not listed as a model"

    weights = tmp_path / model_id / "model.pt"
    state = torch.load(weights, weights_only=True)
    torch.save({name: tensor + 1 for name, tensor in state.items()}, weights)
    fresh = models.export_bytes(tmp_path, model_id, "onnx")
    assert fresh != first and made == [model_id] * 2, "new weights under the id: exported again"
    kept = list((tmp_path / models.EXPORTS / model_id).iterdir())
    assert [k.read_bytes() for k in kept] == [fresh], "the stale export is gone"
    lineage = tmp_path / model_id / "lineage.json"
    lineage.write_text(lineage.read_text().replace('"rounds": 1', '"rounds": 2'))
    models.export_bytes(tmp_path, model_id, "onnx")
    assert len(made) == 3, "a changed lineage is exported again"
