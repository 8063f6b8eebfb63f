"""`flip demo dermatology` refuses options no run can use, in one line, before any work."""

import pytest

from flip.demo.dermatology.options import DermatologyDemoError, DermatologyOptions


def test_image_weights_that_are_not_a_file_are_refused(tmp_path):
    missing = tmp_path / "skin.pt"
    with pytest.raises(DermatologyDemoError, match=r"--image-weights .*skin\.pt: not a file"):
        DermatologyOptions(out=tmp_path / "out", image_weights=missing).check()
    with pytest.raises(DermatologyDemoError, match="not a file"):
        DermatologyOptions(out=tmp_path / "out", image_weights=tmp_path).check()
    missing.write_bytes(b"weights")
    DermatologyOptions(out=tmp_path / "out", image_weights=missing).check()
