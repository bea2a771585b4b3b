"""Mask and image files whose readers once gave other ids or pixels than
the file holds, without a word: each is now read exactly or refused by name."""

import os

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from seglayers import segmentation_dataset_from_directory  # noqa: E402
from tests.data.directory_test import PALETTE, _all  # noqa: E402

SIZE = (20, 24)


def _folder(root, write_mask, write_image=None):
    """One pair: a random RGB PNG image (or `write_image`'s) and the ids
    of a fixed mask written by `write_mask(path_without_extension, ids)`."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, SIZE + (3,), dtype=np.uint8)
    (write_image or (lambda p, x: Image.fromarray(x).save(p + ".png")))(
        str(root / "images" / "a"), image
    )
    ids = rng.integers(0, 3, SIZE).astype(np.uint8)
    write_mask(str(root / "masks" / "a"), ids)
    return ids


def _load(root, **kwargs):
    kwargs = {"num_classes": 3, "image_size": SIZE, "batch_size": 1, **kwargs}
    return _all(segmentation_dataset_from_directory(root, **kwargs))[1][0, ..., 0]


def _grey_png(bits):
    def write(path, ids):
        Image.fromarray(ids, "L").save(path + ".png", bits=bits)

    return write


def _palette_file(extension, palette=PALETTE):
    def write(path, ids):
        image = Image.fromarray(ids, "P")
        image.putpalette(sum(palette, []))
        image.save(path + extension, optimize=False)

    return write


def _png16_rgb(path, ids):
    # As cv2.imwrite writes a uint16 (H, W, 3) array: Pillow reads its high
    # bytes, so every id below 256 was 0, but colours scaled by 257 as such.
    rgb = np.repeat(ids.astype(np.uint16)[..., None], 3, -1)
    if ids.max() > 2:  # Colours: those of PALETTE, 16-bit.
        rgb = np.array(PALETTE, np.uint16)[ids % 3] * 257
    with open(path + ".png", "wb") as f:
        f.write(tf.io.encode_png(rgb).numpy())


def _colour16(path, ids):
    _png16_rgb(path, ids + 3)


@pytest.mark.parametrize(
    "write, kwargs, expected",
    [
        # Pillow scales 2- and 4-bit grey samples to 0..255 (3 became 255).
        (_grey_png(2), {}, lambda ids: ids),
        (_grey_png(4), {}, lambda ids: ids),
        # A GIF's palette indices are its ids, as in Carvana's black and white.
        (_palette_file(".gif", [[0, 0, 0], [255] * 3, [9] * 3]), {}, lambda ids: ids),
        # A 16-bit colour PNG's high bytes are its colours.
        (_colour16, {"palette": PALETTE}, lambda ids: ids),
        # With `palette`, a palette-mode file is read by its colours (it was
        # refused mid-epoch: "masks must be RGB").
        (_palette_file(".png"), {"palette": PALETTE}, lambda ids: ids),
        (_palette_file(".gif"), {"palette": PALETTE}, lambda ids: ids),
    ],
)
def test_masks_are_read_as_the_file_holds_them(tmp_path, write, kwargs, expected):
    ids = _folder(tmp_path, write)
    np.testing.assert_array_equal(_load(tmp_path, **kwargs), expected(ids))


def _jpeg_named_png(path, ids):
    Image.fromarray(ids * 100).save(path + ".png", format="JPEG")


def _webp_named_png(path, ids):
    # Lossy: 307 of 480 ids were wrong, all in range, and none named.
    Image.fromarray(ids * 100).save(path + ".png", format="WEBP", quality=10)


@pytest.mark.parametrize(
    "write, match",
    [
        (_png16_rgb, r"a\.png is a 16-bit RGB PNG, which is read with 8 bits"),
        (_jpeg_named_png, r"a\.png is a JPEG file, whatever its name says"),
        (_webp_named_png, r"a\.png is a WEBP file, whatever its name says"),
    ],
)
def test_masks_no_reader_reads_exactly_are_refused_up_front(tmp_path, write, match):
    _folder(tmp_path, write)
    with pytest.raises(ValueError, match=match):
        segmentation_dataset_from_directory(tmp_path, num_classes=3)


@pytest.mark.parametrize("mode, kind", [("P", "palette"), ("1", "1-bit")])
def test_bmp_images_tensorflow_misreads_are_refused_up_front(tmp_path, mode, kind):
    # A palette BMP's indices were read as grey levels; a 1-bit one failed
    # mid-epoch without naming the file.
    def write_image(path, image):
        Image.fromarray(image).convert(mode).save(path + ".bmp")

    _folder(tmp_path, lambda p, ids: Image.fromarray(ids).save(p + ".png"), write_image)
    with pytest.raises(ValueError, match=rf"a\.bmp is a {kind} BMP, which Tensor"):
        segmentation_dataset_from_directory(tmp_path, num_classes=3)


def test_grey_masks_with_a_palette_say_to_leave_it_out(tmp_path):
    _folder(tmp_path, lambda path, ids: Image.fromarray(ids, "L").save(path + ".png"))
    with pytest.raises(
        Exception,
        match=r"a\.png: with a `palette`, masks must be RGB colours; this one is "
        r"mode 'L'\. For masks of class ids, leave `palette` out",
    ):
        _load(tmp_path, palette=PALETTE)


def test_a_gif_whose_indices_and_grey_levels_are_both_ids_is_refused(tmp_path):
    # Pillow's GIF writer renumbers the indices in use: ids 0 and 2 are
    # indices 0 and 1 of grey levels 0 and 2; read by index, 2 became 1.
    def write(path, ids):
        Image.fromarray(np.where(ids == 1, 0, ids)).save(path + ".gif")

    _folder(tmp_path, write)
    with pytest.raises(
        Exception,
        match=r"a\.gif is a GIF whose palette indices "
        r"\[0, 1\] are grey levels \[0, 2\], both class ids",
    ):
        _load(tmp_path)
