"""The dermatology photograph network: MONAI's ResNet at the photographs' own size, started
from a site's registered pretrained copy when the task names one (hash-checked), trained whole."""

import hashlib

import pytest
import torch
from monai.networks.nets import ResNet

from flip.data.features.adapter import Weights
from flip.data.features.dermatology import FEATURES
from flip.data.features.text import TextSpec
from flip.data.ledger import Ledger
from flip.data.pretrained import PretrainedError, add_model
from flip.demo.dermatology import train
from flip.fl.tasks.dermatology import new_model, skin_network, start_image
from flip.fl.tasks.dermatology_task import DermatologyTask


def _task(weights: Weights | None = None, size: int = 224) -> DermatologyTask:
    return DermatologyTask(
        name="psoriasis",
        cohort="psoriasis, started a biologic",
        features=FEATURES,
        text=TextSpec(encoder="hashed", dims=16),
        image_size=size,
        image_weights=weights,
        rounds=1,
        local_epochs=1,
    )


def _saved_network(path, seed: int = 11) -> tuple[dict[str, torch.Tensor], str]:
    """A photograph network of the task's layout with weights of its own, saved by the test."""
    torch.manual_seed(seed)
    state = skin_network().state_dict()
    torch.save(state, path)
    return state, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_photograph_network_is_a_monai_resnet_reading_224_pixel_rgb():
    model = new_model(6, 0, True, seed=0)
    assert isinstance(model.model.image, ResNet)
    photos = torch.rand(2, 3, 224, 224)
    out = model(torch.zeros(2, 6), torch.zeros(2, 0), photos)
    assert out.shape == (2,)
    travelling = model.state_dict()
    assert any(k.startswith("model.image.layer4.") for k in travelling)


def test_the_network_starts_from_the_weights_the_task_names_and_no_others(tmp_path):
    saved, sha = _saved_network(tmp_path / "skin.pt")
    model = new_model(6, 0, True, seed=0)
    assert not torch.equal(model.model.image.conv1.weight, saved["conv1.weight"])
    start_image(model, tmp_path / "skin.pt", sha)
    for key, value in saved.items():
        assert torch.equal(model.model.image.state_dict()[key], value), key
    with pytest.raises(PretrainedError, match="not the task's"):
        start_image(new_model(6, 0, True, seed=0), tmp_path / "skin.pt", "0" * 64)


def test_weights_of_another_network_are_refused_in_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(PretrainedError, match="do not fit"):
        start_image(new_model(6, 0, True, seed=0), path, sha)


def test_the_references_start_from_the_sites_registered_copy(tmp_path):
    saved, sha = _saved_network(tmp_path / "skin.pt")
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        add_model(ledger, "skin", tmp_path / "skin.pt", by="admin")
    task = _task(Weights(name="skin", sha256=sha))
    model = train.fresh(task, "biomarker", None, tmp_path / "skin.pt")
    assert torch.equal(model.model.image.conv1.weight, saved["conv1.weight"])
    unnamed = train.fresh(_task(), "biomarker", None, tmp_path / "skin.pt")
    assert not torch.equal(unnamed.model.image.conv1.weight, saved["conv1.weight"])


def test_everything_the_photograph_network_learns_travels_no_batch_statistics_stay_behind():
    model = new_model(6, 0, True, seed=0)
    assert not list(model.model.image.buffers())
    norms = [m for m in model.model.image.modules() if "Norm" in type(m).__name__]
    assert norms and all(isinstance(m, torch.nn.GroupNorm) for m in norms)
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
