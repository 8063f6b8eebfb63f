"""A PACS over DICOMweb (real Orthanc) -> image_occurrence rows that point at their series."""

import json
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources.dicomweb import DicomWebError, read_server
from flip.ports import free_port
from tests.data.accounting import assert_accounted
from tests.data.orthanc import orthanc_server
from tests.data.test_dicom_instances import SERIES_TREE


@pytest.fixture
def orthanc(tmp_path):
    with orthanc_server(tmp_path / "orthanc") as server:
        yield server


@pytest.mark.orthanc
@pytest.mark.parametrize("store", ["duckdb", "postgres"], indirect=True)
def test_series_from_a_pacs_join_their_patients(store, exported, orthanc, tmp_path):
    _, patients, folder = exported("csv", n=12)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    for path in sorted(images.glob("*.dcm")):
        orthanc.upload(path)
    stranger = pydicom.dcmread(images / f"{patients[0].source_id}.dcm")
    stranger.PatientID = "NOBODY"
    stranger.StudyInstanceUID, stranger.SeriesInstanceUID = generate_uid(), generate_uid()
    stranger.SOPInstanceUID = generate_uid()
    stranger.save_as(tmp_path / "stranger.dcm")
    orthanc.upload(tmp_path / "stranger.dcm")

    report = ingest_path(store, "dicom", None, url=orthanc.dicomweb)
    assert report.rules == {"reference.dangling": 1}
    assert report.rows["image_occurrence"] == len(patients)
    with store.connect() as conn:
        rows = conn.execute(
            select(
                schema.image_occurrence.c.wadors_uri,
                schema.image_occurrence.c.image_series_uid,
                schema.image_occurrence.c.local_path,
                schema.person.c.person_source_value,
            ).join(schema.person, schema.person.c.person_id == schema.image_occurrence.c.person_id)
        ).all()
    assert {source for *_, source in rows} == {p.source_id for p in patients}
    for uri, series, local_path, _ in rows:
        assert uri.startswith(f"{orthanc.dicomweb}/studies/") and uri.endswith(f"/series/{series}")
        assert local_path is None, "the pixels stay in the PACS"

    again = ingest_path(store, "dicom", None, url=orthanc.dicomweb)
    assert again.loaded == 0 and again.unchanged == len(patients)


def test_an_unreachable_pacs_is_a_clear_error():
    base = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(DicomWebError, match=f"{base}: the server stopped after 0 studies"):
        list(read_server(base, attempts=1))


@pytest.mark.orthanc
def test_a_pacs_accounts_for_every_instance(store, exported, orthanc, tmp_path):
    _, patients, folder = exported("csv", n=3)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    for path in sorted(images.glob("*.dcm")):
        orthanc.upload(path)
    first = pydicom.dcmread(images / f"{patients[0].source_id}.dcm")
    for n, changes in enumerate(
        [
            {"InstanceNumber": 2},
            {"InstanceNumber": 3},
            {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.11", "Modality": "SR"},
            {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.11.1", "Modality": "PR"},
        ]
    ):
        if "SOPClassUID" in changes:
            first.SeriesInstanceUID = generate_uid()
        for keyword, value in changes.items():
            setattr(first, keyword, value)
        first.SOPInstanceUID = first.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        first.file_meta.MediaStorageSOPClassUID = first.SOPClassUID
        first.save_as(tmp_path / f"{n}.dcm")
        orthanc.upload(tmp_path / f"{n}.dcm")
    orthanc.upload(Path(get_testdata_file("rtplan.dcm")))

    report = ingest_path(store, "dicom", None, url=orthanc.dicomweb)
    assert_accounted(store, report)
    assert report.read == len(patients) + 5, "one record per instance on the server"
    assert report.skipped_rules == {
        "dicom.non_image.structured_report": 1,
        "dicom.non_image.presentation_state": 1,
        "dicom.non_image.rt_plan": 1,
    }
    assert report.rows == {"image_occurrence": len(patients), "image_instance": 2}
    assert report.quarantined == 0
    with store.connect() as conn:
        slices = conn.execute(
            select(schema.image_instance.c.wadors_uri, schema.image_occurrence.c.wadors_uri).join(
                schema.image_occurrence,
                schema.image_occurrence.c.image_occurrence_id
                == schema.image_instance.c.image_occurrence_id,
            )
        ).all()
    assert len(slices) == 2
    assert all(mine.startswith(f"{series}/instances/") for mine, series in slices)

    again = ingest_path(store, "dicom", None, url=orthanc.dicomweb)
    assert_accounted(store, again)
    assert again.unchanged == len(patients) + 2 and again.skipped_rules == report.skipped_rules


@pytest.mark.orthanc
def test_a_study_is_read_in_one_search_whatever_its_series(orthanc):
    files = [p for p in sorted(SERIES_TREE.glob("9889200*/*/*")) if p.is_file()]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    studies = {str(ds.StudyInstanceUID) for ds in headers}
    series = {str(ds.SeriesInstanceUID) for ds in headers}
    assert len(series) > len(studies), "pydicom's studies hold several series"
    for path in files:
        orthanc.upload(path)
    asked: list[str] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *_, **__: asked.append(response.url))

    records = list(read_server(orthanc.dicomweb, session=session))
    assert sorted(r.location.rsplit("/", 1)[1] for r in records) == sorted(
        str(ds.SOPInstanceUID) for ds in headers
    )
    assert len(asked) == 2 + len(studies), (
        asked
    )  # a page of studies, one search each, an empty page


class _CappedPacs(requests.adapters.BaseAdapter):
    """A QIDO-RS server that returns at most two studies a page, whatever the limit asked
    (as PACSs capped by configuration do), and ignores the offset of instance searches.
    Orthanc here pages as asked, so this behaviour is served by hand."""

    def __init__(self, studies: int) -> None:
        super().__init__()
        self.uids = [f"1.2.826.0.1.{n}" for n in range(1, studies + 1)]

    def send(self, request, **kwargs):
        from urllib.parse import parse_qs, urlparse

        url = urlparse(request.url)
        query = parse_qs(url.query)
        if url.path.endswith("/studies"):
            offset = int(query.get("offset", ["0"])[0])
            body = [self._study(uid) for uid in self.uids[offset : offset + 2]]
        else:
            uid = url.path.split("/studies/")[1].split("/")[0]
            body = [self._instance(uid)]
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response.headers["Content-Type"] = "application/dicom+json"
        response._content = json.dumps(body).encode()
        return response

    def close(self) -> None:
        pass

    @staticmethod
    def _study(uid: str) -> dict:
        return {"0020000D": {"vr": "UI", "Value": [uid]}, "00100020": {"vr": "LO", "Value": ["P1"]}}

    @staticmethod
    def _instance(uid: str) -> dict:
        return {
            "0020000D": {"vr": "UI", "Value": [uid]},
            "0020000E": {"vr": "UI", "Value": [f"{uid}.1"]},
            "00080018": {"vr": "UI", "Value": [f"{uid}.1.1"]},
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "00080020": {"vr": "DA", "Value": ["20200101"]},
        }


def test_a_pacs_that_caps_its_pages_is_read_to_the_end():
    """A page shorter than the limit asked ended the read: a PACS capped at two results a
    page gave two of its five studies, silently (and --prune then removed the rest); an
    instance search that ignores the offset, without a count, never ended."""
    session = requests.Session()
    session.mount("http://pacs/", _CappedPacs(5))
    records = list(read_server("http://pacs/dicom-web", session=session))
    assert sorted(r.key for r in records) == [f"series/1.2.826.0.1.{n}.1" for n in range(1, 6)]
