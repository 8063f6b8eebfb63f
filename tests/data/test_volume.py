"""Series -> volumes: slices placed in space, rescaled to modality units, windowed, resized."""

import numpy as np
import pytest

from flip.data.features.volume import VolumeError, normalised, resized, stack
from flip.synth.radiology import default_sites, draw_site, enhanced_object, instance_series


def _study():
    sites = default_sites(2, people=1)
    return sites, draw_site(sites[0], seed=1, slices=10, size=16)[0]


def test_slices_in_any_order_and_one_multiframe_object_give_the_same_volume():
    sites, study = _study()
    slices = instance_series(sites[0], study)
    shuffled = [slices[k] for k in np.random.default_rng(0).permutation(len(slices))]
    for k, ds in enumerate(shuffled):
        ds.InstanceNumber = k + 1  # a PACS may number them in any order: space decides
    expected = np.clip(np.rint(study.volume), -1024, 3071)
    np.testing.assert_allclose(stack(shuffled), expected)
    np.testing.assert_allclose(stack([enhanced_object(sites[1], study)]), expected)


def test_slices_of_different_sizes_are_not_a_volume():
    sites, study = _study()
    slices = instance_series(sites[0], study)[:2]
    small = draw_site(sites[0], seed=1, slices=10, size=8)[0]
    slices[1] = instance_series(sites[0], small)[1]
    with pytest.raises(VolumeError, match="differ in size"):
        stack(slices)


def test_a_window_clips_and_scales_and_resizing_averages():
    volume = np.array([[[-100.0, 0.0], [40.0, 500.0]]] * 2)
    out = normalised(volume, (0.0, 80.0))
    assert out.min() == 0.0 and out.max() == 1.0 and out[0, 1, 0] == pytest.approx(0.5)
    assert resized(out, 1, 1).item() == pytest.approx(out.mean())


def test_a_volume_from_files_is_a_multiframe_object_never_one_slice(tmp_path):
    from flip.data.features.image import ImageError, ImageSpec, image_matrix

    sites, study = _study()
    single = tmp_path / "slice.dcm"
    instance_series(sites[0], study)[0].save_as(single, enforce_file_format=True)
    enhanced = tmp_path / "enhanced.dcm"
    enhanced_object(sites[1], study).save_as(enhanced, enforce_file_format=True)
    spec = ImageSpec(size=8, depth=5, window=(0.0, 80.0))
    expected = resized(normalised(np.clip(np.rint(study.volume), -1024, 3071), (0, 80)), 5, 8)
    np.testing.assert_allclose(image_matrix([str(enhanced), None], spec)[0], expected.reshape(-1))
    assert not image_matrix([str(enhanced), None], spec)[1].any()
    with pytest.raises(ImageError, match="one slice of a series, not a volume"):
        image_matrix([str(single)], spec)
