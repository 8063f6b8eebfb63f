"""De-identification of DICOM objects before their pixels or headers reach training, under
DICOM PS3.15 Annex E's Basic Application Level Confidentiality Profile.

The profile lists what identifies a patient (Table E.1-1) and an action for each: remove,
empty, replace with a dummy, or replace a UID. This module applies it by keeping only what
a model needs (pixels, their encoding, geometry and acquisition, `KEPT`) and removing every
other attribute, which is stricter than the table: names, identifiers, dates and times,
institutions, devices, people, free text, private attributes, overlays and anything a future
header adds are all gone. The UIDs a volume needs to hold together (study, series, instance,
frame of reference) are replaced by new ones, the same source UID always by the same new one
under one salt (the profile's "U"), so nothing links them back. Type 2 attributes of the
patient and study are left empty (its "Z"). The result says what was done (Patient Identity
Removed, De-identification Method and its code 113100). An object whose pixels carry burned-in
text (Burned In Annotation YES) is refused: the basic profile cannot clean pixels.
"""

from __future__ import annotations

import hashlib

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

#: The profile as De-identification Method names it, and its code (CID 7050).
PROFILE = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
#: Attributes kept: the pixels and how they are encoded, rescaled and laid out in space,
#: the kind of object and acquisition; none names a person, place, time or device.
KEPT = frozenset(
    {
        # Image Pixel and its compression
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelAspectRatio",
        "PixelData",
        "NumberOfFrames",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        # Modality LUT and VOI
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        # Geometry
        "PixelSpacing",
        "SliceThickness",
        "SpacingBetweenSlices",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceLocation",
        "PatientPosition",
        # What the object is
        "SOPClassUID",
        "Modality",
        "ImageType",
        "BodyPartExamined",
        "SeriesNumber",
        "InstanceNumber",
        "AcquisitionNumber",
        # Acquisition physics
        "KVP",
        "ConvolutionKernel",
        "MagneticFieldStrength",
        "ScanningSequence",
        "SequenceVariant",
        "RepetitionTime",
        "EchoTime",
        "FlipAngle",
        # Enhanced multi-frame functional groups (their items are filtered the same way)
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
        "PixelMeasuresSequence",
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "PixelValueTransformationSequence",
        "FrameVOILUTSequence",
        "FrameContentSequence",
        "InStackPositionNumber",
        "StackID",
        "DimensionIndexValues",
        "TemporalPositionIndex",
    }
)
#: UIDs replaced by new ones (profile action U) wherever they are kept.
REPLACED = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "MediaStorageSOPInstanceUID",
    }
)
#: Type 2 attributes of the patient and study, left present and empty (profile action Z).
EMPTIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate")
EMPTIED_TOO = ("StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


class DeidentificationError(ValueError):
    """An object the basic profile cannot de-identify (its pixels carry burned-in text)."""


def new_uid(salt: str, uid: str) -> str:
    """The UID that replaces `uid` under `salt`: the same for the same pair, unlinkable
    without the salt (a 2.25 UID from a SHA-256 of both)."""
    digest = hashlib.sha256(f"{salt}\0{uid}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def deidentify(ds: Dataset, salt: str) -> Dataset:
    """A new object holding only `KEPT` of `ds`, its UIDs replaced under `salt`, marked as
    de-identified; raises DeidentificationError for burned-in annotation."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise DeidentificationError(
            "its pixels carry burned-in annotation (Burned In Annotation YES), which the "
            "basic profile cannot remove"
        )
    out = _filtered(ds, salt)
    for keyword in (*EMPTIED, *EMPTIED_TOO):
        setattr(out, keyword, "")
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = PROFILE
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
    out.DeidentificationMethodCodeSequence = Sequence([code])
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.file_meta = _meta(meta, salt)
    return out


def _filtered(ds: Dataset, salt: str) -> Dataset:
    """`ds` with only kept attributes, its UIDs replaced, its kept sequences filtered too."""
    out = Dataset()
    for element in ds:
        keyword = element.keyword
        if element.tag.is_private or keyword not in KEPT | REPLACED:
            continue
        if keyword in REPLACED:
            out[element.tag] = DataElement(element.tag, "UI", new_uid(salt, str(element.value)))
        elif element.VR == "SQ":
            out[element.tag] = DataElement(
                element.tag, "SQ", Sequence([_filtered(item, salt) for item in element.value])
            )
        else:
            out[element.tag] = DataElement(element.tag, element.VR, element.value)
    return out


def _meta(meta: FileMetaDataset, salt: str) -> FileMetaDataset:
    """The file meta information a decoder needs, its instance UID replaced."""
    out = FileMetaDataset()
    for keyword in ("MediaStorageSOPClassUID", "TransferSyntaxUID"):
        if keyword in meta:
            setattr(out, keyword, meta[keyword].value)
    if "MediaStorageSOPInstanceUID" in meta:
        out.MediaStorageSOPInstanceUID = new_uid(salt, str(meta.MediaStorageSOPInstanceUID))
    out.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return out
