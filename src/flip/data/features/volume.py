"""CT and MR volumes as model inputs: a series' objects, already de-identified, stacked in space.

A series arrives as one object per slice, ordered along the slices' normal by Image Position
(Patient) (by Instance Number where a slice has no position), or as one enhanced multi-frame
object whose frames are placed by their functional groups. Stored values become modality
units (Hounsfield units for CT) by each slice's or frame's rescale, are clipped to the task's
`window` and scaled to [0, 1] (without a window, by the volume's own 1st and 99th
percentiles), and the volume is resized to depth x size x size.
"""

from __future__ import annotations

import numpy as np
import torch
from pydicom.dataset import Dataset


class VolumeError(ValueError):
    """A series cannot be stacked into a volume; the message says why."""


def _rescale(*groups: Dataset | None) -> tuple[float, float]:
    """(slope, intercept) from the first of `groups` that has them (a frame's, the shared
    functional groups', the object's), else (1, 0)."""
    for group in groups:
        if group is None:
            continue
        transform = group.get("PixelValueTransformationSequence")
        source = transform[0] if transform else group
        if "RescaleSlope" in source or "RescaleIntercept" in source:
            return float(source.get("RescaleSlope", 1)), float(source.get("RescaleIntercept", 0))
    return 1.0, 0.0


def _normal(orientation: object) -> np.ndarray | None:
    values = [float(v) for v in orientation] if orientation else []
    if len(values) != 6:
        return None
    return np.cross(values[:3], values[3:])


def _position(group: Dataset | None) -> list[float] | None:
    if group is None:
        return None
    plane = group.get("PlanePositionSequence")
    found = plane[0].get("ImagePositionPatient") if plane else group.get("ImagePositionPatient")
    return [float(v) for v in found] if found and len(found) == 3 else None


def _item(ds: Dataset, keyword: str, index: int = 0) -> Dataset | None:
    sequence = ds.get(keyword)
    return sequence[index] if sequence and len(sequence) > index else None


def _multiframe(ds: Dataset) -> list[tuple[float, np.ndarray]]:
    """(position along the normal, frame in modality units) of an enhanced object's frames."""
    frames = ds.pixel_array.astype(np.float32)
    frames = frames.reshape(-1, *frames.shape[-2:])
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    orientation = _item(shared, "PlaneOrientationSequence") if shared is not None else None
    normal = _normal(orientation.get("ImageOrientationPatient") if orientation else None)
    out = []
    for k, frame in enumerate(frames):
        own = _item(ds, "PerFrameFunctionalGroupsSequence", k)
        slope, intercept = _rescale(own, shared, ds)
        where = _position(own)
        along = float(np.dot(normal, where)) if normal is not None and where else float(k)
        out.append((along, frame * slope + intercept))
    return out


def _slice(ds: Dataset, k: int) -> tuple[float, np.ndarray]:
    """(position along the normal, image in modality units) of one single-frame object."""
    normal = _normal(ds.get("ImageOrientationPatient"))
    where = _position(ds)
    along = (
        float(np.dot(normal, where))
        if normal is not None and where
        else float(ds.get("InstanceNumber", k) or k)
    )
    slope, intercept = _rescale(ds)
    image = ds.pixel_array.astype(np.float32)
    return along, image.reshape(image.shape[-2:]) * slope + intercept


def stack(objects: list[Dataset]) -> np.ndarray:
    """The (slices, rows, columns) volume in modality units, slices in spatial order."""
    if not objects:
        raise VolumeError("the series holds no image")
    placed: list[tuple[float, np.ndarray]] = []
    for k, ds in enumerate(objects):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        placed += _multiframe(ds) if frames > 1 else [_slice(ds, k)]
    shapes = {image.shape for _, image in placed}
    if len(shapes) != 1:
        raise VolumeError(f"its slices differ in size: {sorted(shapes)}")
    placed.sort(key=lambda pair: pair[0])
    return np.stack([image for _, image in placed])


def normalised(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """`volume` clipped to `window` and scaled to [0, 1]; without one, by its own 1st and
    99th percentiles."""
    low, high = window if window is not None else np.percentile(volume, (1, 99))
    if high <= low:
        return np.zeros_like(volume, dtype=np.float32)
    return ((np.clip(volume, low, high) - low) / (high - low)).astype(np.float32)


def resized(volume: np.ndarray, depth: int, size: int) -> np.ndarray:
    """`volume` resized to (depth, size, size) by averaging (or repeating) voxels."""
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(tensor, size=(depth, size, size), mode="area")[
        0, 0
    ].numpy()
