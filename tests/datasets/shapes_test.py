import numpy as np
import pytest

from seglayers.datasets import shapes


def test_shapes_dtypes_and_ranges():
    images, masks = shapes.load_data(num_samples=20, image_size=(32, 48), seed=1)
    assert images.shape == (20, 32, 48, 3) and images.dtype == np.float32
    assert masks.shape == (20, 32, 48, 1) and masks.dtype == np.int32
    assert images.min() >= 0 and images.max() <= 255
    assert set(np.unique(masks)) == {0, 1, 2, 3}


def test_deterministic_by_seed():
    a = shapes.load_data(num_samples=5, image_size=(32, 32), seed=3)
    b = shapes.load_data(num_samples=5, image_size=(32, 32), seed=3)
    c = shapes.load_data(num_samples=5, image_size=(32, 32), seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("num_classes", [2, 3])
def test_fewer_classes(num_classes):
    _, masks = shapes.load_data(
        num_samples=30, image_size=(32, 32), num_classes=num_classes
    )
    assert set(np.unique(masks)) == set(range(num_classes))


def test_masks_are_exact_where_shapes_are_painted():
    # Before the noise: every pixel the mask labels carries a shape colour,
    # and every pixel it leaves as background is untouched.
    rng = np.random.default_rng(0)
    images = np.full((6, 64, 64, 3), -1.0, np.float32)
    masks = np.zeros((6, 64, 64), np.int32)
    shapes._draw_shapes(rng, images, masks, num_classes=4)
    painted = (images != -1).all(-1)
    np.testing.assert_array_equal(painted, masks > 0)
    for kind in (1, 2, 3):
        assert (masks == kind).any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 5}, r"`num_classes` must be 2, 3 or 4"),
        ({"image_size": (8, 8)}, r"`image_size` must be a pair of ints"),
        ({"num_samples": 0}, r"num_samples=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shapes.load_data(**kwargs)


@pytest.mark.parametrize(
    "module, size", [("shapes", (32, 32)), ("volumes", (16, 16, 16))]
)
def test_more_than_the_machines_memory_is_refused_before_allocating(
    monkeypatch, module, size
):
    # Linux grants large arrays lazily: the fill was killed out of memory.
    from seglayers import datasets

    load_data = getattr(datasets, module).load_data
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 512}  # 2 MiB
    monkeypatch.setattr("os.sysconf", pages.__getitem__)
    load_data(2, size)
    with pytest.raises(MemoryError, match=r"need \d.* GiB, more than this machine"):
        load_data(200, size)
