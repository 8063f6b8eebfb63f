"""Images as model inputs: each person's latest study before entry, read from its DICOM file.

The store keeps only the path (image_occurrence.local_path); the pixels are read
here, at the site, resized to `size` x `size` and scaled to [0, 1], and become
size*size columns after the other features. A person without an image gets zeros.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sqlalchemy import Connection


class ImageSpec(BaseModel):
    """Which images feed a task and at what resolution."""

    size: int = Field(32, ge=8, le=256, description="Images are resized to size x size.")
    lookback_days: int = Field(365, ge=0, description="Studies this many days before entry count.")
    modality_concept_ids: list[int] = Field(
        default_factory=list, description="Only studies of these modalities; empty: any."
    )


def pixels(path: str, size: int) -> np.ndarray:
    """One image from its DICOM file as size x size floats in [0, 1]."""
    from flip.data.sources.dicom import read_dataset

    ds = read_dataset(path)
    image = ds.pixel_array.astype(np.float32)
    if image.ndim > 2:
        image = image.reshape(-1, *image.shape[-2:])[0]
    top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
    tensor = torch.from_numpy(image / top)[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")
    return resized[0, 0].numpy()


def latest_images(conn: Connection, index: dict[int, date], spec: ImageSpec) -> dict[int, str]:
    """The file of each person's latest study dated in the lookback window up to entry."""
    from sqlalchemy import select

    from flip.data.cdm import schema

    images = schema.image_occurrence
    query = select(images.c.person_id, images.c.image_occurrence_date, images.c.local_path).where(
        images.c.local_path.is_not(None)
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


def image_matrix(paths: list[str | None], size: int) -> np.ndarray:
    """One flattened image per row; zeros where there is none."""
    out = np.zeros((len(paths), size * size), dtype=np.float32)
    for row, path in enumerate(paths):
        if path is not None:
            out[row] = pixels(path, size).reshape(-1)
    return out
