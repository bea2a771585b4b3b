"""Mask files to class ids, in TensorFlow where its decoders give exactly
what Pillow gives, and with Pillow where only it keeps the meaning (palette
PNGs give indices, not colours) or where a mask must be named in an error.
`file_checks._mask_header` picks the decoder of each file from its header.
"""

import functools
import re

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from seglayers._masks import bad_id_mask, num_ids, raise_on_bad_ids
from seglayers._palettes import palette_ids, unknown_colour_id


def read_mask(path, num_classes, ignore_class, palette):
    """Reads a mask file as int32 ids `(H, W, 1)`, checking every id."""
    path = path.decode() if isinstance(path, bytes) else path
    try:
        with Image.open(path) as image:
            image.load()
            mode, form = image.mode, image.format
            if palette is not None and mode in ("P", "PA"):
                image = image.convert("RGB")  # The colours `palette` names.
            array = np.asarray(image)
            gif = form == "GIF" and mode == "P" and palette is None
            colours = image.getpalette("RGB") if gif else None
    except Exception as error:
        raise ValueError(f"Cannot read the mask {path}: {error}") from None
    if colours and num_classes is not None:
        _check_gif_indices(path, array, colours, num_ids(num_classes), ignore_class)
    if form == "PNG" and mode == "L":
        array = _png_samples(path, array)
    if palette is not None:
        if array.ndim != 3 or array.shape[-1] < 3:
            raise ValueError(
                f"{path}: with a `palette`, masks must be RGB colours; this one "
                f"is mode {mode!r}. For masks of class ids, leave `palette` "
                "out; otherwise save this mask in RGB."
            )
        array = keras.ops.convert_to_numpy(
            palette_ids(
                array[..., :3],
                palette,
                num_ids(num_classes),
                ignore_class,
                subject=f"The mask {path}",
            )
        )
    elif array.ndim == 3 and mode in ("LA", "La", "PA"):
        array = array[..., 0]  # Grey or palette indices, then alpha: dropped.
    elif array.ndim == 3:
        if not (array[..., :1] == array[..., 1:3]).all():
            raise ValueError(
                f"{path} is a colour (mode {mode!r}) mask; pass `palette` to map "
                "its colours to class ids, or save masks as single-channel or "
                "palette-mode PNGs of ids."
            )
        array = array[..., 0]
    array = array.astype(np.int32)
    if num_classes is not None:
        classes = num_ids(num_classes)
        bad = bad_id_mask(array, classes, ignore_class)
        raise_on_bad_ids(array, bad, classes, ignore_class, f"The mask {path}")
    return array[..., None]


def _check_gif_indices(path, indices, colours, classes, ignore_class):
    """Refuses a grey GIF whose indices and grey levels are both class ids
    and differ: Pillow's GIF writer renumbers the indices in use (ids 0 and
    2 become indices 0 and 1 of levels 0 and 2), so either may be the ids.
    Carvana's masks (indices 0 and 1, black and white) read by index."""
    colours = np.asarray(colours).reshape(-1, 3)
    used = np.unique(indices)
    levels = colours[used[used < len(colours)]]
    if len(levels) < len(used) or not (levels[:, :1] == levels[:, 1:]).all():
        return  # Colours (or indices past them): indices, as in palette PNGs.
    levels = levels[:, 0]
    if (levels == used).all() or bad_id_mask(levels, classes, ignore_class).any():
        return
    raise ValueError(
        f"The mask {path} is a GIF whose palette indices {used.tolist()} are "
        f"grey levels {levels.tolist()}, both class ids: GIF writers renumber "
        "the indices in use, so which are the ids is unclear. Save masks as "
        "PNGs of ids, or pass `palette` to read them by colour."
    )


def _png_samples(path, array):
    """The samples of a 2- or 4-bit greyscale PNG, which Pillow scales to
    0..255 (×85, ×17); other greyscale PNGs as read."""
    with open(path, "rb") as f:
        header = f.read(26)
    depth, colour = header[24], header[25]  # In IHDR, always first.
    if colour == 0 and depth in (2, 4):
        return array // (255 // (2**depth - 1))
    return array


# How each mask is decoded: in TensorFlow (no GIL) where its decoder gives
# Pillow's array, else by `read_mask` (see `file_checks._mask_header`).
_TF_DECODE = {
    "png": lambda data: tf.io.decode_png(data, channels=1),
    "png16": lambda data: tf.io.decode_png(data, channels=1, dtype=tf.uint16),
    # RGBA without its alpha, which `read_mask` never reads either.
    "png_rgb": lambda data: tf.io.decode_png(data, channels=3),
    "bmp": lambda data: tf.io.decode_bmp(data)[..., :1],  # As stored: one.
    "bmp_rgb": lambda data: tf.io.decode_bmp(data, channels=3),
}


# Images as the folder loader reads them: uint8 `(H, W, 3)`.
_decode_rgb = functools.partial(tf.io.decode_image, channels=3, expand_animations=False)


def decode_image(path):
    """The image file `path` as the folder loader reads it."""
    return _decode_rgb(tf.io.read_file(path))


def first_undecodable(pairs, decoders):
    """`(path, reason)` of the first file of `pairs` that TensorFlow's
    decoder refuses as the loader decodes it (masks by their `decoders`
    entry; Pillow reads the others and names its failures), or None. For a
    pipeline that failed: a file damaged inside ends as a complete one does
    (`file_checks._looks_complete`), and the error in tf.data names no
    file ("Invalid PNG data, size 3172")."""
    for image_path, mask_path in pairs:
        reads = [(image_path, _decode_rgb)]
        reads.append((mask_path, _TF_DECODE.get(decoders[mask_path])))
        for path, decode in reads:
            try:
                if decode is not None:
                    decode(tf.io.read_file(path))
            except tf.errors.InvalidArgumentError as error:
                # "{{function_node ...}} Invalid PNG data, size 3172 [Op:...]"
                reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", error.message).strip()
                return path, (reason.splitlines() or ["InvalidArgumentError"])[0]
    return None


def tf_decoder(decoder, palette, path):
    """`decoder`, or Pillow for a palette lookup the graph cannot make:
    `palette_ids` is `keras.ops`, which runs on tf.data's tensors on the
    TensorFlow backend only, and a mask without colours, which Pillow's
    reader names. Refuses a 16-bit colour PNG but an RGB(A) one with
    `palette`: Pillow reads its high bytes, colours, but every id below 256
    as 0."""
    if decoder.startswith("16-bit"):
        if palette is None or "grey" in decoder:
            raise ValueError(
                f"The mask {path} is a {decoder} PNG, which is read with 8 bits "
                "(every id below 256 as 0; colours, with `palette`, from their "
                "high bytes). Save masks of ids as 8- or 16-bit single-channel "
                "PNGs."
            )
        return "pillow"
    if palette is None or decoder == "pillow":
        return decoder
    if keras.backend.backend() != "tensorflow" or not decoder.endswith("_rgb"):
        return "pillow"
    return decoder


def mask_reader(names, num_classes, ignore_class, palette):
    """`read(path, index)`: int32 ids `(H, W, 1)` of a mask, decoded as
    `names[index]` says. A mask whose decoded values raise any doubt (ids
    out of range, colours) is read again by `read_mask`, whose error names
    the file; a valid one never meets the GIL."""

    def with_pillow(path):
        mask = tf.numpy_function(
            lambda p: read_mask(p, num_classes, ignore_class, palette),
            [path],
            tf.int32,
            stateful=False,
        )
        mask.set_shape((None, None, 1))
        return mask

    def in_tensorflow(path, name):
        raw = tf.cast(_TF_DECODE[name](tf.io.read_file(path)), tf.int32)
        ids, doubtful = _checked_ids(raw, num_classes, ignore_class, palette)
        return tf.cond(doubtful, lambda: with_pillow(path), lambda: ids)

    def read(path, index):
        branches = [
            functools.partial(with_pillow, path)
            if name == "pillow"
            else functools.partial(in_tensorflow, path, name)
            for name in names
        ]
        if len(branches) == 1:
            return branches[0]()
        return tf.switch_case(index, branches)

    return read


def _checked_ids(raw, num_classes, ignore_class, palette):
    """`(ids, doubtful)` of a decoded mask `(H, W, channels)`, as
    `read_mask` reads it: a colour of `palette`, or the first channel (the
    others must equal it); doubtful if `read_mask` would raise."""
    if palette is not None:
        classes = num_ids(num_classes)
        ids = palette_ids(raw[..., :3], palette, classes, ignore_class)[..., None]
        doubtful = tf.reduce_any(ids == unknown_colour_id(ignore_class))
    elif raw.shape[-1] == 1:
        ids, doubtful = raw, tf.constant(False)
    else:
        ids = raw[..., :1]
        doubtful = tf.reduce_any(raw[..., :1] != raw[..., 1:3])
    if num_classes is not None and palette is None:
        # One `max` over the ids' unsigned view (a negative id is huge
        # there), ignored pixels counted as 0, in place of a boolean per
        # pixel: 3% of the loader's CPU time (benchmarks/README.md).
        kept = ids if ignore_class is None else tf.where(ids == ignore_class, 0, ids)
        codes = tf.bitcast(kept, tf.uint32)
        doubtful = doubtful | (tf.reduce_max(codes) >= num_ids(num_classes))
    elif num_classes is not None:
        bad = bad_id_mask(ids, num_ids(num_classes), ignore_class)
        doubtful = doubtful | tf.reduce_any(bad)
    return ids, doubtful
