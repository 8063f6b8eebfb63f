"""Non-image DICOM objects named by SOP Class UID, or by Modality when there is none."""

import pytest

from flip.data.sources.dicom_classes import non_image_kind, non_image_rule, sop_class_name


@pytest.mark.parametrize(
    ("uid", "modality", "kind"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "CT", None),
        ("1.2.840.10008.5.1.4.1.1.1.1", "DX", None),
        ("1.2.840.10008.5.1.4.1.1.481.1", "RTIMAGE", None),
        ("1.2.840.10008.5.1.4.1.1.66.4", "SEG", None),
        ("1.2.840.10008.5.1.4.1.1.481.5", "RTPLAN", "rt_plan"),
        ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", "rt_structure_set"),
        ("1.2.840.10008.5.1.4.1.1.481.2", "RTDOSE", "rt_dose"),
        ("1.2.840.10008.5.1.4.1.1.481.4", "RTRECORD", "rt_treatment"),
        ("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", "waveform"),
        ("1.2.840.10008.5.1.4.1.1.88.11", "SR", "structured_report"),
        ("1.2.840.10008.5.1.4.1.1.88.67", "SR", "structured_report"),
        ("1.2.840.10008.5.1.4.1.1.88.59", "KO", "key_object_selection"),
        ("1.2.840.10008.5.1.4.1.1.11.1", "PR", "presentation_state"),
        ("1.2.840.10008.5.1.4.1.1.104.1", "DOC", "encapsulated_document"),
        ("1.2.840.10008.5.1.4.1.1.66.1", "REG", "other"),
        ("1.2.840.10008.1.3.10", "", "media_directory"),
        ("", "SR", "structured_report"),
        ("", "CT", None),
        ("1.2.3.4.5", "OT", None),
    ],
)
def test_objects_are_classified(uid, modality, kind):
    assert non_image_kind(uid, modality) == kind
    assert non_image_rule(uid, modality) == (None if kind is None else f"dicom.non_image.{kind}")


def test_names_come_from_the_standard():
    assert sop_class_name("1.2.840.10008.5.1.4.1.1.481.5") == "RT Plan Storage"
    assert sop_class_name("1.2.3.4") == "1.2.3.4"
    assert sop_class_name("") == "no SOP Class UID"
