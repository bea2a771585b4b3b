import numpy as np
import pytest

from seglayers.datasets import volumes


def test_volumes_dtypes_and_ranges():
    data, masks = volumes.load_data(num_samples=12, volume_size=(16, 24, 20), seed=1)
    assert data.shape == (12, 16, 24, 20, 1) and data.dtype == np.float32
    assert masks.shape == (12, 16, 24, 20, 1) and masks.dtype == np.int32
    assert data.min() >= 0 and data.max() <= 255
    assert set(np.unique(masks)) == {0, 1, 2, 3}


def test_deterministic_by_seed():
    a = volumes.load_data(num_samples=4, volume_size=(16, 16, 16), seed=3)
    b = volumes.load_data(num_samples=4, volume_size=(16, 16, 16), seed=3)
    c = volumes.load_data(num_samples=4, volume_size=(16, 16, 16), seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("num_classes", [2, 3])
def test_fewer_classes(num_classes):
    _, masks = volumes.load_data(
        num_samples=20, volume_size=(16, 16, 16), num_classes=num_classes
    )
    assert set(np.unique(masks)) == set(range(num_classes))


def test_masks_are_exact_where_shapes_are_painted():
    # Before the noise: every voxel the mask labels carries a shape's grey
    # level, and every voxel it leaves as background is untouched.
    rng = np.random.default_rng(0)
    data = np.full((6, 32, 32, 32, 1), -1.0, np.float32)
    masks = np.zeros((6, 32, 32, 32), np.int32)
    volumes._draw_shapes(rng, data, masks, num_classes=4)
    np.testing.assert_array_equal(data[..., 0] != -1, masks > 0)
    for kind in (1, 2, 3):
        assert (masks == kind).any()


def test_shapes_stand_out_from_what_they_are_drawn_on():
    # On a flat grey of 100, a shape's level is 48 to 128 away; only where
    # one shape lies over another (compared with that one) can it be closer.
    # With levels drawn at random from 0 to 255, 37% of the voxels were.
    rng = np.random.default_rng(0)
    data = np.full((16, 32, 32, 32, 1), 100.0, np.float32)
    masks = np.zeros((16, 32, 32, 32), np.int32)
    volumes._draw_shapes(rng, data, masks, num_classes=4)
    painted = data[..., 0][masks > 0]
    assert np.mean(np.abs(painted - 100) < volumes._MIN_CONTRAST) < 0.05
    assert painted.min() >= 0 and painted.max() <= 255


@pytest.mark.parametrize(
    "kind, volume",
    [
        (1, 4 / 3 * np.pi * 10**3),  # a sphere of radius 10
        (2, (2 * 10 / np.sqrt(3)) ** 3),  # a cube with its corners on it
        # A torus of ring radius R = 10 / 1.5 and tube radius R / 2.
        (3, 2 * np.pi**2 * (10 / 1.5) * (10 / 3) ** 2),
    ],
    ids=["sphere", "cube", "torus"],
)
def test_voxel_counts_match_the_shapes_volumes(kind, volume):
    offsets = [np.arange(-12, 13, dtype=np.float32) + 0.3] * 3
    rotation = volumes._rotations(np.random.default_rng(1), 1)[0]
    inside = volumes._inside(kind, offsets, 10.0, rotation)
    assert abs(inside.sum() / volume - 1) < 0.05


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 5}, r"`num_classes` must be 2, 3 or 4.*num_classes=5"),
        (
            {"volume_size": (32, 32)},
            r"`volume_size` must be a triple of ints.*volume_size=\(32, 32\)",
        ),
        ({"volume_size": (8, 32, 32)}, r"each at least 16"),
        ({"num_samples": 0}, r"num_samples=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        volumes.load_data(**kwargs)
