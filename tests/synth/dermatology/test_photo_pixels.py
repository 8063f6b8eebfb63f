"""The world's photographs as model inputs: DICOM VL Photographic (JPEG baseline) and the
warehouse's JPEG files read as RGB tensors, and a real network regresses PASI from them."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
import torch
from pydicom.encaps import generate_frames

from flip.data.features.image import pixels
from flip.data.features.tabular import TabularData
from flip.fl.tasks.image_cnn import new_model
from flip.fl.tasks.training import predict, train


def _photos(folder, site: str) -> list[dict]:
    with (folder / "truth" / site / "photos.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_dicom_photographs_read_as_the_jpeg_they_carry(tiny_world, tmp_path):
    out, _ = tiny_world
    row = _photos(out, "st-aster")[0]
    dcm = out / "st-aster" / "dicom" / row["file"]
    ds = pydicom.dcmread(dcm)
    assert ds.Modality == "XC" and ds.PhotometricInterpretation == "YBR_FULL_422"
    jpeg = tmp_path / "frame.jpg"
    jpeg.write_bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))
    image = pixels(str(dcm), 224, channels=3)
    assert image.shape == (3, 224, 224) and image.min() >= 0 and image.max() <= 1
    assert np.allclose(image, pixels(str(jpeg), 224, channels=3), atol=0.02)


def test_warehouse_jpegs_read_as_rgb(tiny_world):
    out, _ = tiny_world
    for row in _photos(out, "riverside")[:3]:
        image = pixels(str(out / "riverside" / "warehouse" / "photos" / row["file"]), 224, 3)
        assert image.shape == (3, 224, 224) and np.isfinite(image).all()
        assert image.std(axis=(1, 2)).min() > 0.01, "a photograph, not a flat field"


@pytest.mark.slow
def test_a_resnet_regresses_pasi_from_photographs_for_one_epoch(tiny_world):
    out, _ = tiny_world
    rows = [r for r in _photos(out, "st-aster") if r["pasi"]][:6]
    folder = out / "st-aster" / "dicom"
    x = np.stack([pixels(str(folder / r["file"]), 224, 3, "imagenet").reshape(-1) for r in rows])
    y = np.array([float(r["pasi"]) for r in rows], dtype=np.float32)
    data = TabularData(np.arange(len(rows)), x, y, [f"pixel_{i}" for i in range(x.shape[1])])
    model = new_model(0, 224, seed=0, channels=3, network="resnet18")
    before = [p.detach().clone() for p in model.parameters()]
    result = train(
        model,
        data,
        epochs=1,
        learning_rate=1e-3,
        batch_size=3,
        l2=0.0,
        seed=0,
        outcome="regression",
    )
    assert result["num-examples"] == len(rows) and np.isfinite(result["loss"])
    predicted = predict(model, x, outcome="regression")
    assert predicted.shape[0] == len(rows) and np.isfinite(predicted).all()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert all(changed[:-2]), "one epoch moves every layer of the network"
