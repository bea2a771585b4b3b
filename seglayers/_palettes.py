"""RGB palette masks: which colour is which class id (`check_palette`,
`palette_ids`), for `OneHotMask` and the folder loader. Split from
`seglayers._masks`, which says what every other mask means."""

import keras
import numpy as np
from keras import ops

from seglayers._validation import concrete_value


def check_palette(palette, num_classes=None, ignore_class=None):
    """`palette` as a list of `[r, g, b]` lists, checked: ints in 0..255,
    distinct; with `num_classes`, one colour per class plus optionally the
    colour of ignored pixels (then `ignore_class` must be set)."""
    colours = []
    if isinstance(palette, (list, tuple)):
        # A flat `[0, 0, 0]` has ints for colours: invalid, not a TypeError.
        colours = [list(c) if isinstance(c, (list, tuple)) else c for c in palette]
    valid = colours and all(
        isinstance(c, list)
        and len(c) == 3
        and all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in c)
        for c in colours
    )
    count = "" if num_classes is None else f"{num_classes} "
    allowed = (len(colours),) if num_classes is None else (num_classes,)
    if num_classes is not None and ignore_class is not None:
        allowed = (num_classes, num_classes + 1)
    if not valid or len(colours) not in allowed:
        extra = (
            ", plus optionally the colour of ignored pixels" if len(allowed) > 1 else ""
        )
        raise ValueError(
            f"`palette` must be a list of {count}`[r, g, b]` colours (ints in "
            f"0..255), index = class id{extra}. Received: palette={palette!r}"
        )
    if num_classes is not None and len({tuple(c) for c in colours}) != len(colours):
        raise ValueError(
            "`palette` repeats a colour, so it cannot tell those classes apart. "
            f"Received: palette={palette!r}"
        )
    return [[int(v) for v in c] for c in colours]


def unknown_colour_id(ignore_class):
    """The id `palette_ids` gives a colour not in the palette in traced
    code: neither a class nor `ignore_class`, so every id check flags it."""
    return -2 if ignore_class == -1 else -1


def palette_ids(colours, palette, num_classes, ignore_class=None, subject="The mask"):
    """Class ids `(..., H, W)` of RGB `colours` `(..., H, W, 3)`: the index
    of the exact colour in `palette`, `ignore_class` for the extra colour
    after the classes. A colour not in `palette` raises a `ValueError` when
    the values are at hand, and gives `unknown_colour_id(ignore_class)` in
    traced code."""
    values = ops.convert_to_tensor(colours)
    if len(values.shape) < 1 or values.shape[-1] != 3:
        raise ValueError(
            "With a `palette`, masks must be RGB, (..., H, W, 3). "
            f"Received: mask shape {tuple(values.shape)}"
        )
    # Only whole numbers in [0, 255] are colours: others would alias in the
    # 24-bit code ([0, 256, 0] is [1, 0, 0]) or truncate to one ([127.5, 0,
    # 0], NaN); they are colours not in `palette`. uint8 needs no check.
    dtype = keras.backend.standardize_dtype(values.dtype)
    exact = None
    if dtype != "uint8":
        valid = (values >= 0) & (values <= 255)
        if "float" in dtype:
            valid = valid & (ops.floor(values) == values)  # NaN: False
        exact = ops.all(valid, axis=-1)
        values_in_range = ops.where(exact[..., None], values, 0)
        colours = ops.cast(values_in_range, "int32")
    else:
        colours = ops.cast(values, "int32")
    # One 24-bit code per colour: one comparison per palette entry, not three.
    weights = ops.convert_to_tensor([65536, 256, 1], "int32")
    codes = ops.sum(colours * weights, axis=-1)
    table = ops.convert_to_tensor(
        [r * 65536 + g * 256 + b for r, g, b in palette], "int32"
    )
    matches = codes[..., None] == table
    ids = list(range(num_classes)) + [ignore_class] * (len(palette) - num_classes)
    known = ops.any(matches, axis=-1)
    if exact is not None:
        known = known & exact
    found = ops.sum(ops.where(matches, ops.convert_to_tensor(ids, "int32"), 0), -1)
    if concrete_value(ops.any(~known)):
        unknown = concrete_value(values)[~concrete_value(known)]
        raise ValueError(
            f"{subject} holds colours not in `palette` (each a triple of whole "
            f"numbers in [0, 255]): "
            f"{np.unique(unknown, axis=0)[:10].tolist()}. Add them to `palette` "
            "(index = class id; one extra colour at the end for ignored "
            "pixels) or fix the masks."
        )
    return ops.where(known, found, unknown_colour_id(ignore_class))
