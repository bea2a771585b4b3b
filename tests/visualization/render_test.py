import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from seglayers.visualization import (
    central_slice,
    colorize,
    default_palette,
    display_image,
    overlay,
    render_grid,
    save_png,
)
from seglayers.visualization.palette import NEUTRAL


def test_a_class_255_is_not_drawn_as_ignored():
    # VOC's 255 is the void colour, NEUTRAL, which ignored pixels get.
    palette = default_palette(300)
    assert tuple(palette[255]) != NEUTRAL
    assert len({tuple(c) for c in palette}) == 300
    assert default_palette(255) == palette[:255]


def test_default_palette_is_distinct_and_starts_dark():
    palette = default_palette(21)
    assert palette[0] == [0, 0, 0]
    assert len({tuple(c) for c in palette}) == 21
    assert palette[15] == [192, 128, 128]  # Pascal VOC's "person"


def test_colorize_and_ignored_pixels():
    palette = default_palette(3)
    out = colorize(np.array([[0, 1], [2, 255]]), palette)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == palette[1]
    assert tuple(out[1, 1]) == NEUTRAL


def test_overlay_keeps_the_image_where_there_is_no_class():
    image = np.full((2, 2, 3), 200.0)
    out = overlay(image, np.array([[1, -1], [1, 1]]), default_palette(2), alpha=0.5)
    assert out[0, 1].tolist() == [200, 200, 200]
    assert out[0, 0].tolist() == [164, 100, 100]  # half of (128, 0, 0)


def test_class_7_is_no_ignored_pixel():
    # Class 7 of the VOC palette is (128, 128, 128): the grey of ignored
    # pixels, so it looked ignored and was left out of the overlay.
    palette = default_palette(8)
    ids = np.array([[7, 255]])
    colours = colorize(ids, palette)
    assert colours[0, 0].tolist() == [128, 128, 128] != colours[0, 1].tolist()
    assert NEUTRAL not in {tuple(c) for c in default_palette(255)}
    out = overlay(np.zeros((1, 2, 3)), ids, palette, alpha=0.5)
    assert out.tolist() == [[[64, 64, 64], [0, 0, 0]]]


@pytest.mark.parametrize("alpha", [-0.1, 2.0, "0.5"])
def test_overlay_alpha_outside_0_1_is_refused(alpha):
    # 2.0 wrapped through uint8: 200 became 56.
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \[0, 1\]"):
        overlay(np.full((1, 1, 3), 200), np.ones((1, 1), int), [[0, 0, 0]] * 2, alpha)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.full((4, 4, 3), 0.8), r"whole numbers in \[0, 255\].*from 0\.8 to 0\.8"),
        (np.full((4, 4), 300), r"whole numbers in \[0, 255\].*from 300 to 300"),
        (np.zeros((4, 4, 5), np.uint8), r"Received: array of shape \(4, 4, 5\)"),
        (np.zeros((0, 4, 3), np.uint8), r"with at least one pixel.*\(0, 4, 3\)"),
    ],
    ids=["unit-floats", "300", "5-channels", "empty"],
)
def test_save_png_refuses_what_8_bits_cannot_hold(tmp_path, array, match):
    # Floats in [0, 1] were written black, and 300 as 44.
    with pytest.raises(ValueError, match=match):
        save_png(array, tmp_path / "a.png")
    assert not os.listdir(tmp_path)
    save_png(np.full((4, 4, 1), 200.0), tmp_path / "b.png")  # whole: taken
    assert np.asarray(Image.open(tmp_path / "b.png")).max() == 200


@pytest.mark.parametrize(
    "images, masks, names, match",
    [
        ((3, 8, 8, 3), (1, 8, 8), None, r"`masks` must hold one id map per image"),
        ((1, 8, 8, 3), (1, 4, 4), None, r"Received: masks of shape \(1, 4, 4\)"),
        (
            (0, 8, 8, 3),
            (0, 8, 8),
            None,
            r"`images` holds no image to draw: pass at least one",
        ),
        # Grey images without a channel axis: the error blamed `masks`.
        (
            (2, 8, 8),
            (2, 8, 8),
            None,
            r"^`images` must be a batch of images `\(N, H, W, channels\)` or of "
            r"volumes .*`images\[\.\.\., None\]`\. Received: images of shape "
            r"\(2, 8, 8\)",
        ),
    ],
    ids=["count", "size", "empty", "no-channel-axis"],
)
def test_render_grid_refuses_what_does_not_line_up(images, masks, names, match):
    # More images than masks drew one row without a word.
    with pytest.raises(ValueError, match=match):
        render_grid(
            np.zeros(images),
            np.zeros(masks, int),
            np.zeros(masks, int),
            default_palette(3),
            class_names=names,
        )


def test_render_grid_takes_id_maps_with_a_trailing_1():
    # The error map compared (H, W, 1) with (H, W): an (H, W, W) mess.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 8, 8, 3)).astype(np.uint8)
    masks, predictions = rng.integers(0, 3, (2, 2, 8, 8))
    expected = render_grid(images, masks, predictions, default_palette(3))
    actual = render_grid(
        images, masks[..., None], predictions[..., None], default_palette(3)
    )
    np.testing.assert_array_equal(actual, expected)


def test_save_png_writes_bool_and_16_bit_ids(tmp_path):
    save_png(np.eye(3, dtype=bool), tmp_path / "b.png")
    assert np.asarray(Image.open(tmp_path / "b.png")).tolist() == np.eye(3).tolist()
    ids = np.array([[0, 300], [65535, 7]], np.uint16)
    save_png(ids, tmp_path / "i.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "i.png")), ids)


def test_render_grid_layout():
    images = np.zeros((2, 16, 20, 3))
    masks = np.zeros((2, 16, 20, 1), int)
    grid = render_grid(
        images,
        masks,
        np.zeros((2, 16, 20), int),
        default_palette(3),
        class_names=["a", "b", "c"],
    )
    # Five panels of 20 with four gaps of 4; two rows of 16 + gaps; a legend.
    assert grid.shape[1] == 5 * 20 + 4 * 4
    assert grid.shape[0] > 2 * (16 + 4)
    assert grid.dtype == np.uint8


@pytest.mark.parametrize(
    "image, drawn",
    [
        (np.array([[0, 100, 255]], np.uint8), [0, 100, 255]),  # as given
        (np.array([[0.0, 0.5, 1.0]]), [0, 127, 255]),  # [0, 1]: once all black
        (np.array([[-1000.0, 0.0, 1000.0]]), [0, 127, 255]),  # Hounsfield units
        (np.array([[-2.0, 0.0, 2.0]]), [0, 127, 255]),  # z-scored
        (np.array([[0.0, np.nan, 1.0]]), [0, 0, 255]),
    ],
)
def test_images_of_any_range_are_drawn_visible(image, drawn):
    images = np.repeat(image[None, ..., None], 3, axis=-1)  # (1, 1, 3, 3)
    grid = render_grid(
        images,
        np.zeros((1, 1, 3), int),
        np.zeros((1, 1, 3), int),
        default_palette(2),
        error_map=False,
    )
    assert grid[0, :3, 0].tolist() == drawn


def test_save_png_is_atomic(tmp_path):
    path = tmp_path / "x.png"
    save_png(np.zeros((4, 4, 3), np.uint8), path)
    with Image.open(path) as image:
        assert image.size == (4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_save_png_follows_the_umask(tmp_path, umask, mode):
    # Staged with mkstemp (always 0600), then given what `open` would give.
    old = os.umask(umask)
    try:
        save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.png")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "x.png").st_mode & 0o777 == mode


def test_central_slice_along_each_axis():
    volumes = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(central_slice(volumes, 0), volumes[:, 1])
    np.testing.assert_array_equal(central_slice(volumes, 1), volumes[:, :, 2])
    np.testing.assert_array_equal(central_slice(volumes, 2), volumes[:, :, :, 2])


@pytest.mark.parametrize(
    "call, error, match",
    [
        # numpy: "cannot do a non-empty take from an empty axes".
        (
            lambda: central_slice(np.zeros((1, 0, 4, 4, 1))),
            ValueError,
            r"^`volumes` have no slice along spatial axis 0\. Received: volumes "
            r"of shape \(1, 0, 4, 4, 1\)$",
        ),
        # "" failed renaming a temporary file it named; bytes in a concat.
        (
            lambda: save_png(np.zeros((2, 2), np.uint8), ""),
            ValueError,
            r"^`path` must be a file path .*Received: path=''$",
        ),
        (
            lambda: save_png(np.zeros((2, 2), np.uint8), pathlib.Path("")),
            ValueError,
            r"^`path` must be a file path .*Received: path=\w*Path\('\.'\)$",
        ),
        (
            lambda: save_png(np.zeros((2, 2), np.uint8), "previews/"),
            ValueError,
            r"^`path` must be a file path .*Received: path='previews/'$",
        ),
        (
            lambda: save_png(np.zeros((2, 2), np.uint8), b"x.png"),
            TypeError,
            r"^`path` must be a file path .*Received: path=b'x\.png'$",
        ),
        # "object of type 'NoneType' has no len()".
        (
            lambda: render_grid(*[np.zeros((1, 4, 4, 1))] * 3, None, ["a"]),
            ValueError,
            r"^`palette` must be a list of `\[r, g, b\]` colours.*palette=None$",
        ),
    ],
)
def test_arguments_that_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("slice_axis, panel", [(0, (6, 7)), (1, (5, 7)), (2, (5, 6))])
def test_render_grid_of_grey_volumes(slice_axis, panel):
    volumes = np.full((2, 5, 6, 7, 1), 200.0)
    ids = np.ones((2, 5, 6, 7), int)
    grid = render_grid(volumes, ids, ids, default_palette(2), slice_axis=slice_axis)
    height, width = panel
    assert grid.shape[1] == 5 * width + 4 * 4
    assert (grid[:height, :width] == 200).all()  # the grey image panel
    assert grid[0, 3 * (width + 4)].tolist() == [164, 100, 100]  # the overlay


def test_render_grid_refuses_an_unknown_slice_axis():
    with pytest.raises(ValueError, match=r"`slice_axis` must be one of 0, 1 or 2"):
        render_grid(
            np.zeros((1, 4, 4, 4, 1)),
            *[np.zeros((1, 4, 4, 4), int)] * 2,
            default_palette(2),
            slice_axis=-1,
        )


@pytest.mark.parametrize(
    "mask, palette, error, match",
    [
        # Were truncated into classes 0 and 1.
        (
            np.array([[0.7, 1.5]]),
            None,
            ValueError,
            r"^`mask` holds values that are no class ids: \[0\.7, 1\.5\]\. Class ids "
            r"are whole numbers; resize masks with nearest neighbour",
        ),
        (np.array([[np.nan, 1.0]]), None, ValueError, r"no class ids: \[nan\]"),
        (np.array([["a"]]), None, TypeError, r"^`mask` must hold class ids"),
        # Floats in [0, 1] drew near black; 300 wrapped to 44.
        (
            np.array([[0, 1]]),
            [[0.0, 0.5, 1.0]] * 2,
            ValueError,
            r"^`palette` holds floats in \[0, 1\]: colours are `\[r, g, b\]` in "
            r"0\.\.255, e\.g\. `\(np\.asarray\(palette\) \* 255\)",
        ),
        (np.array([[0, 1]]), [0, 0, 0], ValueError, r"^`palette` must be"),
        (np.array([[0, 1]]), np.array([[1e20, 0, 0]]), ValueError, r"1e\+20"),
        (np.array([[0, 1]]), np.array([[0, 0, 0], [300, 0, 0]]), ValueError, "300"),
        # A one-hot mask of 3 classes gave colours of shape (2, 2, 3, 3).
        (
            np.eye(3, dtype=int)[np.zeros((2, 2), int)],
            None,
            ValueError,
            r"^`mask` must be one map of class ids `\(H, W\)` or `\(H, W, 1\)`; "
            r"one-hot masks go as `np\.argmax\(mask, axis=-1\)`.*\(2, 2, 3\)",
        ),
        (np.zeros((2, 2, 2, 1), int), None, ValueError, r"a batch one map at a time"),
    ],
)
def test_colorize_refuses_what_is_no_class_or_colour(mask, palette, error, match):
    with pytest.raises(error, match=match):
        colorize(mask, default_palette(3) if palette is None else palette)


def test_colorize_takes_whole_floats_and_an_integer_array_palette():
    palette = np.array(default_palette(3))
    expected = colorize(np.array([[0, 2], [1, -1]]), default_palette(3))
    np.testing.assert_array_equal(
        colorize(np.array([[0.0, 2.0], [1.0, -1.0]]), palette), expected
    )
    as_floats = palette.astype(float).tolist()  # as `np.loadtxt` reads one
    np.testing.assert_array_equal(
        colorize(np.array([[0, 2], [1, -1]]), as_floats), expected
    )


def test_overlay_draws_floats_in_0_1_as_render_grid_does():
    # Was black: [0, 1] clipped as if [0, 255].
    out = overlay(np.full((1, 1, 3), 0.5), np.array([[-1]]), default_palette(2))
    assert out.tolist() == [[[127, 127, 127]]]


@pytest.mark.parametrize(
    "class_names, error, match",
    [
        ("abc", TypeError, r"^`class_names` must be a list of names"),
        (["a", None, "c"], TypeError, r"^`class_names` must be a list of names"),
        (
            ["a", "b", "c", "d"],
            ValueError,
            r"^`class_names` has 4 names for the 3 colours of `palette`",
        ),
    ],
)
def test_render_grid_refuses_class_names_that_name_no_class(class_names, error, match):
    ids = np.zeros((1, 8, 8), int)
    with pytest.raises(error, match=match):
        render_grid(np.zeros((1, 8, 8, 3)), ids, ids, default_palette(3), class_names)


@pytest.mark.parametrize(
    "volumes, axis, match",
    [
        ((2, 5, 6, 7, 1), -1, r"`axis` must be one of 0, 1 or 2"),  # was the batch
        ((2, 5, 6, 7, 1), 3, r"`axis` must be one of"),  # was the channels
        ((5, 6, 7), None, r"^`volumes` must be a batch of volumes"),
    ],
)
def test_central_slice_refuses_an_axis_that_is_no_spatial_axis(volumes, axis, match):
    with pytest.raises(ValueError, match=match):
        central_slice(np.zeros(volumes), *([] if axis is None else [axis]))


def test_default_palette_refuses_a_count_that_is_no_positive_int():
    with pytest.raises(TypeError, match=r"^`num_classes` must be a positive integer"):
        default_palette(3.0)
    for count in (0, -1):  # -1 gave an empty palette
        with pytest.raises(ValueError, match=r"Received: num_classes="):
            default_palette(count)


@pytest.mark.parametrize(
    "image", [None, np.ones((2, 2, 3)) * 1j], ids=["none", "complex"]
)
def test_display_image_refuses_what_is_no_numbers(image):
    # None drew a black 0-d array; complex values lost their imaginary part.
    with pytest.raises(TypeError, match=r"^`image` must be an array of numbers"):
        display_image(image)


def test_overlay_draws_grey_images_of_any_channels_as_render_grid_does():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    ids = np.array([[0, 1, 1, -1]] * 3)
    palette = default_palette(2)
    expected = overlay(np.repeat(grey[..., None], 3, axis=-1), ids, palette)
    for image in (grey, grey[..., None], np.stack([grey, grey * 0], -1)):
        # (H, W) gave numpy's broadcast error; (H, W, 2) too.
        np.testing.assert_array_equal(overlay(image, ids, palette), expected)
    grid = render_grid(grey[None, ..., None], ids[None], ids[None], palette)
    np.testing.assert_array_equal(grid[:3, 3 * (4 + 4) :][:, :4], expected)


def test_overlay_refuses_a_mask_of_other_pixels():
    with pytest.raises(
        ValueError,
        match=r"^`mask` must cover the pixels of `image`: ids of shape \(3, 4\).*"
        r"Received: image of shape \(3, 4, 3\), mask of shape \(4, 3\)",
    ):
        overlay(np.zeros((3, 4, 3)), np.zeros((4, 3), int), default_palette(2))
    with pytest.raises(ValueError, match=r"image of shape \(3, 4\), mask of shape"):
        overlay(np.zeros((3, 4)), np.zeros((4, 3), int), default_palette(2))


def test_display_image_draws_bools_black_and_white():
    # They were drawn as 0 and 1 of 255: nearly black.
    image = np.array([[True, False]])
    np.testing.assert_array_equal(display_image(image), [[255, 0]])


def test_display_image_scales_bfloat16_in_0_1_as_other_floats():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    image = np.full((2, 2, 3), 0.5, ml_dtypes.bfloat16)
    np.testing.assert_array_equal(
        display_image(image), display_image(image.astype(np.float32))
    )
