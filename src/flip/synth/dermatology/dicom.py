"""Skin photographs as DICOM VL Photographic Image objects, JPEG baseline compressed as
clinical cameras store them: one study per visit, one series per photograph."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from flip.synth.dermatology.cohort import Person

#: VL Photographic Image Storage.
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
#: DICOM Body Part Examined of each photographed region.
BODY_PARTS = ("HEAD", "ARM", "CHEST", "LEG")


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """A baseline JPEG (4:2:2 chroma) of an RGB image."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality, subsampling=1)
    return out.getvalue()


def photo_dataset(
    site: str, p: Person, day: date, visit: int, region: int, serial: int, jpeg: bytes, camera: str
) -> Dataset:
    """The DICOM object of one photograph."""
    uid = lambda *parts: generate_uid(entropy_srcs=[site, p.mrn, *map(str, parts)])  # noqa: E731
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC
    meta.MediaStorageSOPInstanceUID = uid("photo", serial)
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = VL_PHOTOGRAPHIC
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("visit", visit)
    ds.SeriesInstanceUID = uid("series", serial)
    ds.PatientID = p.mrn
    ds.PatientName = f"{p.family}^{p.given}"
    ds.PatientSex = p.sex[0].upper()
    ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = day.strftime("%Y%m%d")
    ds.AccessionNumber = f"PH{serial:07d}"
    ds.Modality = "XC"
    ds.Manufacturer, ds.ManufacturerModelName = camera.split("/", 1)
    ds.BodyPartExamined = BODY_PARTS[region]
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = 224, 224
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return ds


def write_photo(path: Path, ds: Dataset) -> None:
    """Write one photograph's DICOM file."""
    ds.save_as(path, enforce_file_format=True)
