import numpy as np

from seglayers._palettes import check_palette
from seglayers._validation import check_positive_int

# Pixels with no class (ignored, or outside the palette) are drawn in the
# colour Pascal VOC gives its void label 255, which no id below 255 of
# `default_palette` gets. (It was grey, 128: class 7's colour, so class 7
# looked ignored.)
NEUTRAL = (224, 224, 192)


def default_palette(num_classes):
    """`num_classes` distinct `[r, g, b]` colours, class 0 black.

    The Pascal VOC colour map: the bits of the class id spread over the high
    bits of the three channels, so neighbouring ids differ strongly and
    VOC-style masks get their usual colours.

    >>> default_palette(4)
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    num_classes = check_positive_int("num_classes", num_classes)
    palette = [_voc_colour(class_id) for class_id in range(num_classes)]
    if num_classes > 255:
        # VOC's 255 is its void label, `NEUTRAL`: a class 255 took the colour
        # of ignored pixels. It gets the next id's colour, which no class has.
        palette[255] = _voc_colour(num_classes)
    return palette


def _voc_colour(class_id):
    """The Pascal VOC colour of `class_id`: its bits spread over the high
    bits of the three channels (distinct for ids below 2**24)."""
    r = g = b = 0
    value = class_id
    for shift in range(7, -1, -1):
        r |= ((value >> 0) & 1) << shift
        g |= ((value >> 1) & 1) << shift
        b |= ((value >> 2) & 1) << shift
        value >>= 3
    return [r, g, b]


def colorize(mask, palette):
    """Class ids `(H, W)` or `(H, W, 1)` → uint8 colours `(H, W, 3)`.

    Ids outside `[0, len(palette))` (such as an ignore label) are `NEUTRAL`.
    `palette` is a list (or array) of `[r, g, b]` whole numbers in 0..255;
    ids are integers, or whole floats (fractions, from a mask resized with
    interpolation, and NaN are refused: they are no class).
    """
    palette = check_drawing_palette(palette)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(
            "`mask` must be one map of class ids `(H, W)` or `(H, W, 1)`; "
            "one-hot masks go as `np.argmax(mask, axis=-1)`, a batch one map "
            f"at a time. Received: mask of shape {mask.shape}"
        )
    if mask.dtype.kind == "f":
        whole = np.isfinite(mask) & (np.nan_to_num(mask) % 1 == 0)
        if not whole.all():
            found = np.unique(mask[~whole])[:10].tolist()
            raise ValueError(
                f"`mask` holds values that are no class ids: {found}. Class "
                "ids are whole numbers; resize masks with nearest neighbour "
                "(interpolation blends ids into fractions), and replace NaN. "
                f"Received: mask of shape {mask.shape}, dtype {mask.dtype}"
            )
    elif mask.dtype.kind not in "biu":
        raise TypeError(
            f"`mask` must hold class ids (integers). Received: mask of dtype "
            f"{mask.dtype}"
        )
    colours = np.asarray(list(palette) + [list(NEUTRAL)], np.uint8)
    if mask.dtype.kind == "f":  # no int64 overflow for 1e30
        mask = np.clip(mask, -1, len(palette))
    ids = mask.astype(np.int64)
    ids = np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))
    return colours[ids]


def check_drawing_palette(palette):
    """`palette` checked as `colorize` takes it: a list or array of `[r, g,
    b]` whole numbers in 0..255; returns lists of ints."""
    return check_palette(_whole_numbers(palette))


def _whole_numbers(palette):
    """`palette` as lists of ints where it is an array, or whole floats in
    0..255 (`np.loadtxt`), else as it is, for `check_palette` to judge; a
    float palette in [0, 1] (matplotlib's scale) is refused here."""
    try:
        values = np.asarray(palette)
    except ValueError:  # ragged
        return palette
    if values.dtype.kind == "f" and values.size and np.isfinite(values).all():
        if 0 < values.max() <= 1:
            raise ValueError(
                "`palette` holds floats in [0, 1]: colours are `[r, g, b]` in "
                "0..255, e.g. `(np.asarray(palette) * 255).round().astype(int)`. "
                f"Received: palette={palette!r}"
            )
        if (values % 1 == 0).all() and (np.abs(values) <= 255).all():
            return values.astype(np.int64).tolist()
    return values.tolist() if isinstance(palette, np.ndarray) else palette
