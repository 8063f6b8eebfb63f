"""Which DICOM objects are images: non-image objects classified by SOP Class UID (or Modality).

An image_occurrence row stands for a series of images. RT plans, structure sets and doses,
waveforms (ECG, audio…), structured reports, key object selections, presentation states,
encapsulated documents (PDF, CDA) and media directories (DICOMDIR) are not images: the
readers count each one as skipped under the rule `non_image_rule` names.
"""

from __future__ import annotations

from pydicom.uid import UID

_STORAGE = "1.2.840.10008.5.1.4.1.1."

#: Exact SOP Class UIDs (after the storage root) that are not images, and their kind.
_EXACT = {
    "481.2": "rt_dose",
    "481.3": "rt_structure_set",
    "481.5": "rt_plan",
    "481.8": "rt_plan",
    "88.59": "key_object_selection",
}

#: SOP Class UID families (after the storage root) that are not images, and their kind.
_FAMILIES = (
    ("481.", "rt_treatment"),
    ("9.", "waveform"),
    ("88.", "structured_report"),
    ("11.", "presentation_state"),
    ("104.", "encapsulated_document"),
)

#: Objects with pixel data whose SOP Class name does not say "Image".
_IMAGE_LIKE = {
    "481.1",  # RT Image (portal images) is an image
    "66.4",  # Segmentation
    "30",  # Parametric Map
    "6.2",  # Enhanced US Volume
    "81.1",  # Ophthalmic Thickness Map
    "82.1",  # Corneal Topography Map
}

#: Media Storage Directory (DICOMDIR): an index of files, not an instance.
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

#: Kinds by Modality, for objects that do not name their SOP Class.
_MODALITIES = {
    "RTPLAN": "rt_plan",
    "RTSTRUCT": "rt_structure_set",
    "RTDOSE": "rt_dose",
    "RTRECORD": "rt_treatment",
    "SR": "structured_report",
    "KO": "key_object_selection",
    "PR": "presentation_state",
    "DOC": "encapsulated_document",
    "ECG": "waveform",
    "HD": "waveform",
    "EPS": "waveform",
    "RESP": "waveform",
    "AU": "waveform",
}

#: The prefix of every rule under which a non-image object is skipped.
RULE_PREFIX = "dicom.non_image."


def non_image_kind(sop_class_uid: str, modality: str = "") -> str | None:
    """The kind of non-image object a SOP Class UID (else a Modality) names; None for an image."""
    uid = sop_class_uid.strip()
    if uid == MEDIA_DIRECTORY:
        return "media_directory"
    if uid.startswith(_STORAGE):
        tail = uid[len(_STORAGE) :]
        if tail in _IMAGE_LIKE:
            return None
        if tail in _EXACT:
            return _EXACT[tail]
        for family, kind in _FAMILIES:
            if tail.startswith(family):
                return kind
        named = UID(uid)
        if named.name and named.name != uid and "Image" not in named.name:
            return "other"
        return None
    if uid:
        return None
    return _MODALITIES.get(modality.strip().upper())


def non_image_rule(sop_class_uid: str, modality: str = "") -> str | None:
    """The skip rule of a non-image object (`dicom.non_image.<kind>`); None for an image."""
    kind = non_image_kind(sop_class_uid, modality)
    return None if kind is None else RULE_PREFIX + kind


def sop_class_name(sop_class_uid: str) -> str:
    """The SOP Class's name as DICOM gives it, or the UID when pydicom does not know it."""
    uid = sop_class_uid.strip()
    name = UID(uid).name if uid else ""
    return name if name and name != uid else uid or "no SOP Class UID"
