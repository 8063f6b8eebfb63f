"""Images read as (C, H, W) tensors: RGB and greyscale DICOM from pydicom's own test files
(JPEG baseline, RLE, uncompressed), and the JPEG and PNG photographs a warehouse lists."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from flip.data.features.image import IMAGENET_MEAN, IMAGENET_STD, ImageError, ImageSpec, pixels

RGB_JPEG = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline, YBR_FULL, 100 x 100
RGB_RLE = get_testdata_file("SC_rgb_rle.dcm")  # the same picture, lossless
GREY = get_testdata_file("CT_small.dcm")


def test_rgb_jpeg_baseline_dicom_reads_as_rgb_channels_first():
    image = pixels(RGB_JPEG, 100, channels=3)
    assert image.shape == (3, 100, 100) and image.dtype == np.float32
    assert np.allclose(image[:, 5, 50], [1, 0, 0], atol=0.02), "the top band is red"
    assert np.allclose(image, pixels(RGB_RLE, 100, channels=3), atol=0.03), "lossy ~ lossless"


def test_resizing_keeps_the_colours_of_each_band():
    small, full = pixels(RGB_RLE, 10, channels=3), pixels(RGB_RLE, 100, channels=3)
    assert small.shape == (3, 10, 10)
    assert np.allclose(small[:, 0, 5], full[:, 5, 50], atol=0.02)


def test_a_jpeg_file_reads_like_the_dicom_that_carries_it(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    ds = pydicom.dcmread(RGB_JPEG)
    jpeg.write_bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))
    assert np.allclose(pixels(str(jpeg), 64, 3), pixels(RGB_JPEG, 64, 3), atol=0.02)


def test_a_png_file_reads_exactly(tmp_path):
    rgb = np.asarray(pydicom.dcmread(RGB_RLE).pixel_array)
    png = tmp_path / "photo.png"
    Image.fromarray(rgb).save(png)
    assert np.allclose(pixels(str(png), 100, 3), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_grey_and_colour_convert_to_the_channels_asked_for():
    grey = pixels(GREY, 32, channels=1)
    as_rgb = pixels(GREY, 32, channels=3)
    assert as_rgb.shape == (3, 32, 32) and np.array_equal(as_rgb, np.repeat(grey, 3, axis=0))
    luma = pixels(RGB_RLE, 100, channels=1)
    assert luma.shape == (1, 100, 100)
    assert luma[0, 5, 50] == pytest.approx(0.299, abs=0.01), "pure red has luma 0.299"


def test_imagenet_normalisation_standardises_each_channel():
    unit = pixels(RGB_RLE, 16, 3)
    scaled = pixels(RGB_RLE, 16, 3, normalise="imagenet")
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    assert np.allclose(scaled, (unit - mean) / std, atol=1e-5)
    with pytest.raises(ValueError, match="imagenet normalisation is for 3-channel"):
        ImageSpec(channels=1, normalise="imagenet")


def test_a_file_that_is_no_image_is_named_in_the_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not pixels")
    with pytest.raises(ImageError, match=r"notes\.txt: cannot read its pixels"):
        pixels(str(bad), 8)
