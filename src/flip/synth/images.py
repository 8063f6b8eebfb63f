"""Chest radiographs for synthetic patients, written as real DICOM files (one per study).

Each image is a small frontal chest view: two lung fields and a heart shadow.
The heart is wider (cardiomegaly) more often in patients who go on to have an
event, information no coded column holds, so an image model has something to
learn; texture noise keeps it from being trivial.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from flip.synth.world import Patient

#: Digital X-ray image storage, for presentation.
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SIZE = 32
#: How often the heart shadow is enlarged, for patients with and without a later event.
CARDIOMEGALY_RATE = {True: 0.55, False: 0.12}


def radiograph(rng: np.random.Generator, enlarged: bool, size: int = SIZE) -> np.ndarray:
    """A size x size 8-bit chest view; `enlarged` widens the heart shadow."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    image = np.full((size, size), 40.0)
    for centre in (-0.45, 0.45):
        lung = ((x - centre) / 0.32) ** 2 + (y / 0.75) ** 2 <= 1
        image[lung] = 170.0
    width = (0.42 if enlarged else 0.26) + rng.normal(0, 0.03)
    heart = ((x - 0.08) / width) ** 2 + ((y - 0.3) / 0.3) ** 2 <= 1
    image[heart] = 90.0
    image += rng.normal(0, 18, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _uid(site: str, *parts: str) -> str:
    return generate_uid(entropy_srcs=[site, *parts])


def _dataset(site: str, p: Patient, when: date, pixels: np.ndarray) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = _uid(site, p.source_id, "instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(site, p.source_id, "study")
    ds.SeriesInstanceUID = _uid(site, p.source_id, "series")
    ds.PatientID = p.source_id
    ds.PatientSex = p.sex[0].upper()
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.AccessionNumber = uuid.uuid5(uuid.NAMESPACE_URL, f"{site}/{p.source_id}").hex[:16]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def write_radiographs(site: str, patients: list[Patient], folder: Path, seed: int) -> None:
    """One chest radiograph per patient, taken on their index date, as DICOM under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, *site.encode(), *b"images"])
    for p in patients:
        enlarged = bool(rng.random() < CARDIOMEGALY_RATE[p.mace])
        ds = _dataset(site, p, p.index_date, radiograph(rng, enlarged))
        ds.save_as(folder / f"{p.source_id}.dcm", enforce_file_format=True)
