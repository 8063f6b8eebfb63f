"""`flip models pull` writes the hub's archive as one registry folder, and nowhere else."""

import io
import os
import stat
import zipfile

import pytest

from flip.cli.model_archive import unpack


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_model_folder_lands_in_the_registry_private(tmp_path):
    folder = unpack(_zip({"m-1/model.pt": b"w", "m-1/MODEL_CARD.md": b"# card"}), tmp_path / "reg")
    assert folder == tmp_path / "reg" / "m-1"
    assert (folder / "model.pt").read_bytes() == b"w"
    assert stat.S_IMODE(os.stat(folder / "MODEL_CARD.md").st_mode) == 0o600


@pytest.mark.parametrize(
    "names",
    [
        ["../evil/model.pt"],
        ["m-1/../../model.pt"],
        ["/etc/model.pt"],
        ["/model.pt", "/MODEL_CARD.md"],
        ["..\\evil/model.pt"],
        ["m-1/model.pt", "m-2/model.pt"],
        ["m-1/run.sh"],
        [".hidden/model.pt"],
        ["m-1/sub/model.pt"],
    ],
)
def test_an_archive_that_is_not_one_folder_of_model_files_is_refused(tmp_path, names):
    with pytest.raises(ValueError, match="not one folder of model files"):
        unpack(_zip(dict.fromkeys(names, b"x")), tmp_path / "reg")
    assert not (tmp_path / "reg").exists() and not (tmp_path / "evil").exists()


def test_an_answer_that_is_not_a_zip_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a zip"):
        unpack(b"<html>proxy error</html>", tmp_path)
