"""Image tasks name their network (the small CNN by default, or a MONAI ResNet/DenseNet over
RGB images), and pretrained weights load only when their SHA-256 is the one named."""

from __future__ import annotations

import hashlib

import pytest
import torch
from pydantic import ValidationError

from flip.fl.tasks import TaskSpec, mace_modal_task, mace_task
from flip.fl.tasks.base import task_hash
from flip.fl.tasks.image_cnn import ImageCNN, new_model
from flip.fl.tasks.models import new_model as task_model
from flip.fl.tasks.weights import WeightsError, load_weights


def _rgb_task(network: str | None, size: int = 64, kind: str = "image-cnn") -> TaskSpec:
    base = mace_modal_task(kind, notes=False).model_dump()
    base["data"]["image"] |= {"size": size, "channels": 3, "normalise": "imagenet"}
    return TaskSpec.model_validate(base | {"image_network": network})


def test_an_unset_network_keeps_the_task_hash_of_before():
    spec = mace_task()
    assert b"image_network" not in spec.canonical_json()
    assert task_hash(_rgb_task(None)) != task_hash(_rgb_task("resnet18"))


@pytest.mark.parametrize(
    ("network", "kind", "net_class"),
    [
        (None, "image-cnn", "Classifier"),
        ("resnet18", "image-cnn", "ResNet"),
        ("densenet121", "multimodal", "DenseNet121"),
    ],
)
def test_the_task_builds_the_network_it_names_over_rgb_columns(network, kind, net_class):
    spec = _rgb_task(network, kind=kind)
    model = task_model(spec)
    image = model if kind == "image-cnn" else model.image
    assert type(image.cnn).__name__ == net_class
    model.eval()
    out = model(torch.rand(2, spec.data.width))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_a_network_is_only_for_tasks_that_read_images():
    base = mace_task().model_dump()
    with pytest.raises(ValidationError, match="image_network is for image-cnn"):
        TaskSpec.model_validate(base | {"image_network": "resnet18"})
    with pytest.raises(ValidationError):
        _rgb_task("vgg16")


def test_the_image_columns_reach_the_network_channels_first():
    model = ImageCNN(offset=2, size=4, channels=3, network="small-cnn")
    seen = []
    model.cnn.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    image = torch.arange(48, dtype=torch.float32).reshape(1, 3, 4, 4)
    model.eval()
    model(torch.cat([torch.zeros(1, 2), image.reshape(1, -1)], dim=1))
    assert torch.equal(seen[0], image)


def test_weights_load_only_when_their_sha256_is_the_one_named(tmp_path):
    trained = new_model(0, 16, seed=1, channels=3, network="resnet18")
    path = tmp_path / "resnet18.pt"
    torch.save(trained.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fresh = new_model(0, 16, seed=2, channels=3, network="resnet18")
    before = [p.clone() for p in fresh.parameters()]
    with pytest.raises(WeightsError, match=r"is not the task's .*: refused"):
        load_weights(fresh, path, "0" * 64)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters(), strict=True))
    load_weights(fresh, path, digest)
    for a, b in zip(trained.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = new_model(0, 16, seed=2, channels=1, network="resnet18")
    with pytest.raises(WeightsError, match="do not fit the model"):
        load_weights(other, path, digest)


def test_weights_that_are_not_a_state_dict_are_refused_before_any_code_runs(tmp_path):
    from tests.fl.pickles import Payload

    marker = tmp_path / "pwned"
    model = new_model(0, 16, seed=1, channels=3, network="resnet18")
    for what, content in {"pickle": {"w": Payload(marker)}, "tensor": torch.zeros(2)}.items():
        path = tmp_path / f"{what}.pt"
        torch.save(content, path)
        with pytest.raises(WeightsError, match=str(path)):
            load_weights(model, path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert not marker.exists()
