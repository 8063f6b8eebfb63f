"""A radiology world: head CT studies of patients seen for a suspected stroke, at several
hospitals, written as real DICOM, with the records that carry each study's label.

Each patient arrives, has a blood pressure taken and a non-contrast head CT the same day;
those whose scan shows an infarct (a hypodense lesion in one hemisphere's parenchyma) have
cerebral infarction diagnosed in the following days. The label is thus carried by the data
twice: by the pixels, which no coded column holds, and by the diagnosis in the records, which
is what a task learns from. Lesions vary in size, place and contrast; scanners vary in noise
and head size, so a model has something to learn and cannot read it off one voxel.

Sites store their series differently, as PACSs do: a classic CT series of one instance per
slice (CT Image Storage), or one Enhanced CT object holding every slice as a frame, with its
geometry in functional groups. Headers are realistic, identifiers included (name, MRN, birth
date, accession number, dates and times, institution, referring physician, a vendor's private
tag with the patient's name) for de-identification to remove. Each site also writes a FHIR
transaction bundle (patients, blood pressures, diagnoses) and a site.yaml naming its MRNs as
the person identifier; the truth (each study's label) goes under OUT/truth, never inside an
export.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import orjson
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SNOMED, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
#: Cerebral infarction (SNOMED CT; OMOP 443454) and systolic blood pressure (LOINC; OMOP 3004249).
CEREBRAL_INFARCTION = "432504007"
SYSTOLIC_BP = "8480-6"
#: Hounsfield units of what a head CT shows.
AIR, CSF, BRAIN, BONE = -1000.0, 8.0, 36.0, 900.0
#: How much darker an infarct is than brain (HU), lowest and highest.
INFARCT_DROP = (14.0, 26.0)
_FIRST_NAMES = ("Ada", "Ben", "Cara", "Dev", "Ena", "Finn", "Gita", "Hal", "Isla", "Jon")
_FAMILY_NAMES = ("Okafor", "Smith", "Nowak", "Patel", "Jones", "Silva", "Khan", "Evans")


@dataclass(frozen=True)
class RadiologySite:
    """One hospital: its size, case mix, scanner and how its PACS stores a series."""

    name: str
    n_persons: int
    infarct_rate: float
    noise: float  # HU, the scanner's noise
    storage: str  # "instances" (one file per slice) or "enhanced" (one multi-frame object)
    institution: str


_SITES = (
    RadiologySite("north", 64, 0.45, 7.0, "instances", "North General Hospital"),
    RadiologySite("south", 48, 0.35, 9.0, "enhanced", "South Infirmary"),
    RadiologySite("east", 40, 0.55, 6.0, "instances", "East Stroke Centre"),
    RadiologySite("west", 36, 0.4, 8.0, "enhanced", "West University Hospital"),
)


def default_sites(n_sites: int, people: int | None = None) -> list[RadiologySite]:
    """The first `n_sites` hospitals (up to 8; later ones repeat the pattern with their own
    names), each with `people` patients when given."""
    if not 1 <= n_sites <= 8:
        raise ValueError(f"--sites must be between 1 and 8, not {n_sites}")
    sites = []
    for n in range(n_sites):
        base = _SITES[n % len(_SITES)]
        name = base.name if n < len(_SITES) else f"{base.name}{n // len(_SITES) + 1}"
        count = people if people is not None else base.n_persons
        sites.append(replace(base, name=name, n_persons=count))
    return sites


@dataclass(frozen=True)
class Study:
    """One patient's head CT and what it shows."""

    mrn: str
    name: str
    sex: str
    birth: date
    day: date
    systolic: int
    infarct: bool
    volume: np.ndarray  # (slices, rows, columns) in HU


def head_ct(
    rng: np.random.Generator, infarct: bool, noise: float, slices: int = 32, size: int = 64
) -> np.ndarray:
    """A (slices, size, size) head CT in HU: skull, brain, ventricles and, with `infarct`, a
    hypodense lesion in one hemisphere."""
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, slices),
        np.linspace(-1, 1, size),
        np.linspace(-1, 1, size),
        indexing="ij",
    )
    a, b, c = rng.uniform(0.72, 0.86), rng.uniform(0.8, 0.92), rng.uniform(0.9, 1.05)
    radius = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    volume = np.full(radius.shape, AIR, dtype=np.float32)
    volume[radius <= 1.0] = BONE
    brain = radius <= 0.88
    volume[brain] = BRAIN
    for side in (-1, 1):
        ventricle = ((x - side * 0.12) / 0.08) ** 2 + (y / 0.3) ** 2 + (z / 0.35) ** 2 <= 1
        volume[ventricle] = CSF
    if infarct:
        side = rng.choice((-1, 1))
        centre = (rng.uniform(-0.4, 0.4), rng.uniform(-0.45, 0.45), side * rng.uniform(0.3, 0.5))
        size_r = rng.uniform(0.18, 0.3)
        lesion = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= size_r**2
        volume[lesion & brain] -= rng.uniform(*INFARCT_DROP)
    volume += rng.normal(0, noise, volume.shape).astype(np.float32)
    return volume


def draw_site(site: RadiologySite, seed: int, slices: int = 32, size: int = 64) -> list[Study]:
    """The site's patients and their scans, the same for the same seed."""
    rng = np.random.default_rng([seed, *site.name.encode(), *b"radiology"])
    studies = []
    for n in range(site.n_persons):
        infarct = bool(rng.random() < site.infarct_rate)
        born = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 50)))
        day = date(2023, 1, 2) + timedelta(days=int(rng.integers(0, 700)))
        sex = "male" if rng.random() < 0.5 else "female"
        name = f"{rng.choice(_FAMILY_NAMES)}^{rng.choice(_FIRST_NAMES)}"
        systolic = int(rng.normal(165 if infarct else 150, 20))
        volume = head_ct(rng, infarct, site.noise, slices, size)
        studies.append(
            Study(
                f"{site.name[:2].upper()}{n + 1:05d}",
                name,
                sex,
                born,
                day,
                systolic,
                infarct,
                volume,
            )
        )
    return studies


def _uid(site: str, *parts: object) -> str:
    return generate_uid(entropy_srcs=[site, *map(str, parts)])


def _common(site: RadiologySite, s: Study, sop_class: str, sop_uid: str) -> Dataset:
    """The attributes every object of the study carries: patient, study, series, equipment."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = s.name, s.mrn
    ds.PatientBirthDate = s.birth.strftime("%Y%m%d")
    ds.PatientSex = s.sex[0].upper()
    ds.PatientAge = f"{(s.day - s.birth).days // 365:03d}Y"
    ds.StudyInstanceUID = _uid(site.name, s.mrn, "study")
    ds.SeriesInstanceUID = _uid(site.name, s.mrn, "series")
    ds.FrameOfReferenceUID = _uid(site.name, s.mrn, "frame")
    stamp = s.day.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = stamp
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "093512"
    ds.AccessionNumber = uuid.uuid5(uuid.NAMESPACE_URL, f"{site.name}/{s.mrn}").hex[:12].upper()
    ds.StudyID = "1"
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = "Stroke^Team"
    ds.OperatorsName = "Radiographer^On^Call"
    ds.StudyDescription = "CT HEAD WITHOUT CONTRAST"
    ds.SeriesDescription = "Axial 5mm brain"
    ds.Modality, ds.BodyPartExamined = "CT", "HEAD"
    ds.Manufacturer, ds.ManufacturerModelName = "FLIP Imaging", f"Synth CT {site.name}"
    ds.DeviceSerialNumber = f"SN-{site.name.upper()}-001"
    ds.StationName = f"{site.name.upper()}CT1"
    ds.SeriesNumber = 2
    ds.KVP, ds.ConvolutionKernel = 120, "H30s"
    ds.PatientPosition = "HFS"
    ds.add_new(0x00090010, "LO", "FLIP SYNTH")
    ds.add_new(0x00091001, "LO", s.name.replace("^", " "))  # a vendor's private copy of the name
    return ds


def _pixels(ds: Dataset, hu: np.ndarray) -> None:
    """Stored as unsigned 12-bit values with a rescale back to HU."""
    stored = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = stored.tobytes()


#: Geometry: 3.2 mm pixels (64 of them span a 20 cm head), 5 mm axial slices.
PIXEL_SPACING, SLICE_MM = 3.2, 5.0
ORIENTATION = [1, 0, 0, 0, 1, 0]


def _position(k: int, size: int) -> list[float]:
    half = size * PIXEL_SPACING / 2
    return [-half, -half, -80.0 + k * SLICE_MM]


def instance_series(site: RadiologySite, s: Study) -> list[Dataset]:
    """The study as a classic CT series: one CT Image object per slice."""
    out = []
    slices, size = s.volume.shape[0], s.volume.shape[1]
    for k in range(slices):
        ds = _common(site, s, CT_IMAGE, _uid(site.name, s.mrn, "slice", k))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _position(k, size)
        ds.ImageOrientationPatient = ORIENTATION
        ds.SliceLocation = _position(k, size)[2]
        ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
        ds.SliceThickness = SLICE_MM
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 80
        _pixels(ds, s.volume[k])
        out.append(ds)
    return out


def enhanced_object(site: RadiologySite, s: Study) -> Dataset:
    """The study as one Enhanced CT Image object, every slice a frame."""
    slices, size = s.volume.shape[0], s.volume.shape[1]
    ds = _common(site, s, ENHANCED_CT_IMAGE, _uid(site.name, s.mrn, "enhanced"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = slices
    ds.AcquisitionDateTime = f"{s.day:%Y%m%d}093512"
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [PIXEL_SPACING, PIXEL_SPACING], SLICE_MM
    orientation = Dataset()
    orientation.ImageOrientationPatient = ORIENTATION
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = -1024, 1, "HU"
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(slices):
        frame, content, plane = Dataset(), Dataset(), Dataset()
        content.FrameAcquisitionDateTime = f"{s.day:%Y%m%d}0935{12 + k // 10:02d}"
        content.StackID, content.InStackPositionNumber = "1", k + 1
        content.DimensionIndexValues = [1, k + 1]
        plane.ImagePositionPatient = _position(k, size)
        frame.FrameContentSequence = Sequence([content])
        frame.PlanePositionSequence = Sequence([plane])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    _pixels(ds, s.volume)
    return ds


def _fhir(site: RadiologySite, studies: list[Study]) -> dict:
    """One transaction bundle: each patient, their blood pressure, and any infarct diagnosed."""

    def rid(*parts: object) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((site.name, *map(str, parts)))))

    resources = []
    for s in studies:
        pid = rid(s.mrn)
        family, given = s.name.split("^")
        resources.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [{"system": mrn_system(site.name), "value": s.mrn}],
                "name": [{"family": family, "given": [given]}],
                "gender": s.sex,
                "birthDate": s.birth.isoformat(),
            }
        )
        subject = {"reference": f"urn:uuid:{pid}"}
        resources.append(
            {
                "resourceType": "Observation",
                "id": rid(s.mrn, "bp"),
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": SYSTOLIC_BP}]},
                "subject": subject,
                "effectiveDateTime": f"{s.day.isoformat()}T09:00:00+00:00",
                "valueQuantity": {
                    "value": s.systolic,
                    "unit": "mm[Hg]",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            }
        )
        if s.infarct:
            resources.append(
                {
                    "resourceType": "Condition",
                    "id": rid(s.mrn, "infarct"),
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {"coding": [{"system": SNOMED, "code": CEREBRAL_INFARCTION}]},
                    "subject": subject,
                    "onsetDateTime": (s.day + timedelta(days=1)).isoformat(),
                }
            )
    entries = [
        {
            "fullUrl": f"urn:uuid:{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def mrn_system(site: str) -> str:
    """The identifier system of the site's hospital numbers."""
    return f"urn:flip:{site}:mrn"


@dataclass(frozen=True)
class RadiologyWritten:
    """Where one site's export went and what it holds."""

    site: RadiologySite
    folder: Path
    studies: int
    infarcts: int
    files: int


def write_site(
    out: Path, site: RadiologySite, seed: int, slices: int = 32, size: int = 64
) -> RadiologyWritten:
    """Write one site's DICOM series (OUT/SITE/dicom), FHIR bundle (OUT/SITE/fhir),
    site.yaml, and its truth (OUT/truth/SITE.json)."""
    folder = out / site.name
    studies = draw_site(site, seed, slices, size)
    (folder / "fhir").mkdir(parents=True, exist_ok=True)
    (folder / "fhir" / "bundle.json").write_bytes(orjson.dumps(_fhir(site, studies)))
    identifier = {"person_identifier": {"system": mrn_system(site.name)}}
    (folder / "site.yaml").write_text(yaml.safe_dump(identifier))
    files = 0
    for s in studies:
        series = folder / "dicom" / s.mrn
        series.mkdir(parents=True, exist_ok=True)
        objects = (
            [enhanced_object(site, s)] if site.storage == "enhanced" else instance_series(site, s)
        )
        for number, ds in enumerate(objects, start=1):
            ds.save_as(series / f"{number:04d}.dcm", enforce_file_format=True)
            files += 1
    truth = {s.mrn: {"infarct": s.infarct, "study_date": s.day.isoformat()} for s in studies}
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "truth" / f"{site.name}.json").write_text(json.dumps(truth, indent=1))
    return RadiologyWritten(site, folder, len(studies), sum(s.infarct for s in studies), files)


def write_world(
    out: Path,
    n_sites: int = 3,
    seed: int = 0,
    people: int | None = None,
    slices: int = 32,
    size: int = 64,
) -> list[RadiologyWritten]:
    """Write every site's export under OUT/SITE and the truth under OUT/truth."""
    if not 8 <= slices <= 256 or not 16 <= size <= 512:
        raise ValueError(f"--slices must be 8-256 and --size 16-512, not {slices} and {size}")
    out.mkdir(parents=True, exist_ok=True)
    return [write_site(out, site, seed, slices, size) for site in default_sites(n_sites, people)]
