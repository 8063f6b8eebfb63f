"""Images as model inputs: each person's latest study before entry, read where it is kept.

The store keeps only a reference (image_occurrence.local_path, or wadors_uri for a PACS);
the pixels are read here, at the site: from a DICOM file (greyscale or colour, any transfer
syntax pydicom decodes) or a JPEG/PNG photograph, or over DICOMweb (WADO-RS) from the PACS.
Every DICOM object is de-identified (`flip.data.sources.dicom_deid`, PS3.15's basic
profile) before its pixels are used, so no identifier, date or source UID reaches training.
A picture is resized to `size` x `size` with `channels` channels (1 grey, 3 RGB), scaled to
[0, 1] (or standardised by the ImageNet channel means); a volume (`depth` set: a CT or MR
series) is stacked in space, windowed and resized to depth x size x size
(`flip.data.features.volume`). Either becomes its columns after the other features,
channels first. A person without an image gets zeros.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from pydicom.errors import InvalidDicomError

from flip.data.features.adapter import AdapterSpec

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from sqlalchemy import Connection

#: The first bytes of the photograph formats read through Pillow rather than pydicom.
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
#: The RGB channel means and standard deviations of ImageNet, which pretrained encoders expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R BT.601 luma weights: a colour image read as one grey channel.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageError(ValueError):
    """An image file cannot be read as pixels."""


class ImageSpec(BaseModel):
    """Which images feed a task, at what resolution and in how many channels."""

    size: int = Field(32, ge=8, le=512, description="Images are resized to size x size.")
    channels: Literal[1, 3] = Field(1, description="1: grey; 3: RGB (grey images repeated).")
    normalise: Literal["unit", "imagenet"] = Field(
        "unit", description="unit: [0, 1]; imagenet: minus the ImageNet mean, over its std (RGB)."
    )
    depth: int | None = Field(
        None,
        ge=4,
        le=256,
        description="Read each study as a volume (a CT or MR series) of depth x size x size; "
        "unset: one picture.",
    )
    window: tuple[float, float] | None = Field(
        None,
        description="A volume's values (e.g. Hounsfield units) clipped to [low, high] and scaled "
        "to [0, 1]; unset: by each volume's 1st and 99th percentiles.",
    )
    lookback_days: int = Field(365, ge=0, description="Studies this many days before entry count.")
    modality_concept_ids: list[int] = Field(
        default_factory=list, description="Only studies of these modalities; empty: any."
    )
    adapter: AdapterSpec | None = Field(
        None,
        description="Fine-tune the task's image_network from pretrained weights with LoRA on "
        "its convolutions; only the adapters and the head train and travel.",
    )

    @model_validator(mode="after")
    def _imagenet_is_rgb(self) -> ImageSpec:
        if self.normalise == "imagenet" and self.channels != 3:
            raise ValueError("imagenet normalisation is for 3-channel (RGB) images")
        if self.depth is not None and (self.channels != 1 or self.normalise != "unit"):
            raise ValueError("a volume (depth) has one channel and unit normalisation")
        if self.window is not None and (self.depth is None or self.window[0] >= self.window[1]):
            raise ValueError("window is a volume's [low, high], low below high")
        return self

    @property
    def n_columns(self) -> int:
        """Columns of one flattened image or volume."""
        return self.channels * (self.depth or 1) * self.size * self.size


def _is_photo(path: str) -> bool:
    with Path(path).open("rb") as handle:
        head = handle.read(8)
    return any(head.startswith(magic) for magic in _PHOTO_MAGIC)


def _photo(path: str) -> np.ndarray:
    """A JPEG or PNG as (H, W, C) floats in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I"):
            return np.asarray(img, dtype=np.float32)[..., None] / 65535.0
        rgb = img.convert("RGB") if img.mode not in ("L", "RGB") else img
        array = np.asarray(rgb, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def is_remote(reference: str) -> bool:
    """Whether an image reference is a WADO-RS URL (else a file's path)."""
    return reference.startswith(("http://", "https://"))


def dicom_objects(reference: str, salt: str) -> list[Dataset]:
    """The DICOM objects of an image reference (a file, or a WADO-RS series or instance URL),
    each de-identified under `salt` before anything else reads it."""
    from flip.data.sources.dicom import read_dataset
    from flip.data.sources.dicom_deid import deidentify
    from flip.data.sources.dicomweb import retrieve

    found = retrieve(reference) if is_remote(reference) else [read_dataset(reference)]
    return [deidentify(ds, salt) for ds in found]


def _dicom(ds: Dataset) -> np.ndarray:
    """The first frame of a DICOM image as (H, W, C) floats in [0, 1] (colour as RGB)."""
    image = ds.pixel_array.astype(np.float32)
    samples = int(ds.get("SamplesPerPixel", 1))
    frame_dims = 3 if samples > 1 else 2
    if image.ndim > frame_dims:
        image = image.reshape(-1, *image.shape[-frame_dims:])[0]
    if samples == 1:
        image = image[..., None]
    top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
    return image / top


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) with C made `channels`: grey repeated to RGB, RGB weighted to grey."""
    have = image.shape[-1]
    if have == channels:
        return image
    if channels == 3:
        return np.repeat(image[..., :1], 3, axis=-1)
    return (image[..., :3] @ _LUMA)[..., None]


#: What reading an image's pixels raises when they cannot be read.
_UNREADABLE = (OSError, ValueError, AttributeError, RuntimeError, KeyError, InvalidDicomError)


def pixels(
    path: str, size: int, channels: int = 1, normalise: str = "unit", salt: str | None = None
) -> np.ndarray:
    """One image from its DICOM, JPEG or PNG file, or its WADO-RS URL, as (channels, size,
    size) floats; a DICOM object is de-identified under `salt` (a fresh one if None) first."""
    try:
        if not is_remote(path) and _is_photo(path):
            image = _photo(path)
        else:
            image = _dicom(dicom_objects(path, salt or secrets.token_hex(16))[0])
    except _UNREADABLE as exc:
        raise ImageError(f"{path}: cannot read its pixels: {exc}") from exc
    image = _channels(image, channels)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")[0]
    if normalise == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        resized = (resized - mean) / torch.tensor(IMAGENET_STD)[:, None, None]
    return resized.numpy()


def volume(reference: str, spec: ImageSpec, salt: str | None = None) -> np.ndarray:
    """One series (its files or its WADO-RS URL) as a (1, depth, size, size) volume,
    every object de-identified under `salt` (a fresh one if None) first."""
    from flip.data.features.volume import normalised, resized, stack

    assert spec.depth is not None
    try:
        objects = dicom_objects(reference, salt or secrets.token_hex(16))
        single = not is_remote(reference) and int(objects[0].get("NumberOfFrames", 1) or 1) < 2
        stacked = None if single else stack(objects)
    except _UNREADABLE as exc:
        raise ImageError(f"{reference}: cannot read its volume: {exc}") from exc
    if stacked is None:
        raise ImageError(
            f"{reference}: one slice of a series, not a volume: read the series from its PACS "
            "(flip site ingest dicom --url), or store it as one multi-frame object"
        )
    return resized(normalised(stacked, spec.window), spec.depth, spec.size)[None]


def latest_images(conn: Connection, index: dict[int, date], spec: ImageSpec) -> dict[int, str]:
    """Where each person's latest study dated in the lookback window up to entry is kept:
    its file, else its WADO-RS URL in the PACS."""
    from sqlalchemy import func, select

    from flip.data.cdm import schema

    images = schema.image_occurrence
    where = func.coalesce(images.c.local_path, images.c.wadors_uri)
    query = select(images.c.person_id, images.c.image_occurrence_date, where).where(
        where.is_not(None)
    )
    if spec.modality_concept_ids:
        query = query.where(images.c.modality_concept_id.in_(spec.modality_concept_ids))
    latest: dict[int, tuple[date, str]] = {}
    for pid, when, path in conn.execute(query):
        at = index.get(pid)
        if at is None or not (at - timedelta(spec.lookback_days) <= when <= at):
            continue
        if pid not in latest or latest[pid][0] <= when:
            latest[pid] = (when, path)
    return {pid: path for pid, (_, path) in latest.items()}


def image_matrix(paths: list[str | None], spec: ImageSpec) -> np.ndarray:
    """One flattened (channels-first) image or volume per row; zeros where there is none.
    The objects are de-identified under one fresh salt, never kept."""
    salt = secrets.token_hex(16)
    out = np.zeros((len(paths), spec.n_columns), dtype=np.float32)
    for row, path in enumerate(paths):
        if path is None:
            continue
        if spec.depth is not None:
            out[row] = volume(path, spec, salt).reshape(-1)
        else:
            out[row] = pixels(path, spec.size, spec.channels, spec.normalise, salt).reshape(-1)
    return out
