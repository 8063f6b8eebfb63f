"""`flip models pull` from a hostile hub: an archive that unpacks to more than a model's
files may hold (a zip bomb: megabytes that say they hold gigabytes of zeros) is refused
before anything is written or decompressed."""

import io
import zipfile

import pytest

from flip.cli import model_archive


def _bomb(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m-1/lineage.json", b"{}")
        archive.writestr("m-1/model.pt", bytes(size))
    return buffer.getvalue()


def test_an_archive_over_the_unpacked_limit_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(model_archive, "MAX_UNPACKED", 64 * 1024)
    archive = _bomb(1 << 20)
    assert len(archive) < 4096, "a megabyte of zeros compresses to almost nothing"
    with pytest.raises(ValueError, match="unpacks to"):
        model_archive.unpack(archive, tmp_path / "reg")
    assert not (tmp_path / "reg").exists()


def test_an_archive_within_the_limit_unpacks(tmp_path, monkeypatch):
    monkeypatch.setattr(model_archive, "MAX_UNPACKED", 64 * 1024)
    folder = model_archive.unpack(_bomb(1000), tmp_path / "reg")
    assert (folder / "model.pt").read_bytes() == bytes(1000)
