"""De-identification of DICOM objects (PS3.15 basic profile) before training reads them."""

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from flip.data.features.volume import stack
from flip.data.sources.dicom_deid import DeidentificationError, deidentify
from flip.synth.radiology import default_sites, draw_site, enhanced_object, instance_series

SITE = default_sites(2, people=1)


def _study(storage: int = 0):
    site = SITE[storage]
    return site, draw_site(site, seed=3, slices=8, size=16)[0]


def _identifiers(ds: Dataset) -> list[str]:
    """Every value of the source that names the patient, a date, a place or a UID."""
    keys = (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "AccessionNumber",
        "InstitutionName",
        "ReferringPhysicianName",
        "OperatorsName",
        "DeviceSerialNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    )
    return [str(ds.data_element(k).value) for k in keys] + [str(ds[0x00091001].value)]


def test_the_basic_profile_leaves_no_identifier_date_or_source_uid():
    site, study = _study()
    source = instance_series(site, study)[3]
    request = Dataset()
    request.RequestedProcedureID = "RQ-778812"
    request.ScheduledProcedureStepID = "SPS-1"
    source.RequestAttributesSequence = Sequence([request])
    source.InstitutionAddress = "1 Hospital Road, Northtown NT1 1AA"
    secrets = [*_identifiers(source), "RQ-778812", "Northtown", study.name.split("^")[0]]

    out = deidentify(source, salt="s1")

    text = out.to_json() + str(out.file_meta)
    for value in secrets:
        assert value not in text, value
    assert not any(element.tag.is_private for element in out)
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert out.PatientName == "" and out.PatientID == "" and out.StudyDate == ""
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert list(out.ImagePositionPatient) == list(source.ImagePositionPatient)
    assert out.RescaleIntercept == source.RescaleIntercept and out.Modality == "CT"


def test_a_source_uid_becomes_the_same_new_uid_under_one_salt_only():
    site, study = _study()
    first, second = instance_series(site, study)[:2]
    a, b = deidentify(first, "s1"), deidentify(second, "s1")
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != first.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert deidentify(first, "s2").SeriesInstanceUID != a.SeriesInstanceUID


def test_an_enhanced_object_keeps_its_frames_geometry_but_no_frame_times():
    site, study = _study(storage=1)
    source = enhanced_object(site, study)
    out = deidentify(source, "s")
    for value in _identifiers(source):
        assert value not in out.to_json()
    frame = out.PerFrameFunctionalGroupsSequence[2]
    assert "FrameAcquisitionDateTime" not in frame.FrameContentSequence[0]
    assert frame.PlanePositionSequence[0].ImagePositionPatient[2] == -70.0
    assert "AcquisitionDateTime" not in out
    np.testing.assert_allclose(stack([out]), np.clip(np.rint(study.volume), -1024, 3071))


def test_burned_in_annotation_is_refused():
    site, study = _study()
    source = instance_series(site, study)[0]
    source.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        deidentify(source, "s")
