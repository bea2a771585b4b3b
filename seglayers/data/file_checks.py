"""Checks of image and mask files made before any pixel is read in tf.data,
so that a broken file or pair is named, not met mid-epoch."""

import os

from PIL import Image


def _image_size(path, kind):
    """`(height, width)` from a file's header (its pixels are not read)."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except Exception as error:
        raise ValueError(
            f"Cannot read the {kind} {path}: {error}. Remove or replace the file."
        ) from None


# The last bytes of a complete file: a PNG's IEND chunk, a GIF's trailer,
# a JPEG's end-of-image marker (which a few bytes may follow). A file that
# ends otherwise is decoded once to confirm, so odd but valid files pass.
_TRAILERS = {".png": b"IEND\xaeB`\x82", ".gif": b";", ".jpg": b"\xff\xd9"}
_TRAILERS[".jpeg"] = _TRAILERS[".jpg"]


def _looks_complete(path):
    """Whether the file ends as a complete image does: a look at its last
    bytes (BMP: the size its header states), not a decode."""
    extension = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if extension == ".bmp":
            f.seek(2)
            return int.from_bytes(f.read(4), "little") <= size
        f.seek(max(size - 1024, 0))
        tail = f.read()
    trailer = _TRAILERS.get(extension)
    if trailer is None:
        return True
    if extension in (".jpg", ".jpeg"):
        return trailer in tail
    return tail.endswith(trailer)


def _check_complete(path):
    """Names a file cut short (a copy or download interrupted): TensorFlow's
    decoder, which reads the images in tf.data, would fail on it mid-epoch
    without naming it ("Invalid PNG data, size 6210"). Only a file whose end
    looks wrong is decoded, by Pillow, to confirm."""
    if _looks_complete(path):
        return
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:
        raise ValueError(
            f"Cannot read the image {path}: {error}. Remove or replace the file."
        ) from None


def check_pairs(pairs):
    """Reads every header now, so that a file that is no image, or is cut
    short, or a mask of another size than its image, is named before training
    starts. Both are resized to `image_size` afterwards, which would hide a
    size mismatch."""
    for image_path, mask_path in pairs:
        image_size = _image_size(image_path, "image")
        _check_complete(image_path)
        mask_size = _image_size(mask_path, "mask")
        if image_size != mask_size:
            raise ValueError(
                f"The image {image_path} is {image_size[0]}x{image_size[1]} "
                f"(height x width) but its mask {mask_path} is "
                f"{mask_size[0]}x{mask_size[1]}; a mask labels its image pixel "
                "for pixel. Resize the mask to its image's size with nearest "
                "neighbour, or fix the pair."
            )
