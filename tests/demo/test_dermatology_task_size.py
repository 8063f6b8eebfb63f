"""The task `flip demo dermatology` asks the sites to approve reads photographs at a size set
by --size: smaller for --size small (its 10-minute budget), the bar's size otherwise."""

from flip.data.features.text import TextSpec
from flip.demo.dermatology.journey import make_task
from flip.demo.dermatology.options import DermatologyOptions


def _image_size(size: str, tmp_path) -> int:
    options = DermatologyOptions(size=size, out=tmp_path)
    return make_task(options, TextSpec(encoder="hashed", dims=16)).image_size


def test_size_small_reads_smaller_photographs_than_the_default_world(tmp_path):
    assert _image_size("small", tmp_path) < _image_size("default", tmp_path)


def test_the_default_world_keeps_128_pixels(tmp_path):
    assert _image_size("default", tmp_path) == 128
    assert _image_size("large", tmp_path) == 128
