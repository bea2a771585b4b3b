"""Targets: what a `y_true` means for predictions over given pixels.

The metrics, the losses and `MaskVisualizer` call `target_ids` or
`target_one_hot`: class ids `(..., H, W)` or `(..., H, W, 1)`, or one-hot
`(..., H, W, C)` of values in [0, 1] whose all-zero rows (what `OneHotMask`
writes for `ignore_class`) are ignored pixels. The dtypes and the id check
they build on are in `seglayers._masks`.
"""

import numpy as np
from keras import ops

from seglayers._masks import (
    as_int_ids,
    bad_id_mask,
    class_argmax,
    mask_tensor,
    shown_values,
)
from seglayers._validation import concrete_value


def _channels_hint(true_shape, classes, y_pred_shape):
    """Where `y_pred` looks like scores of the wrong number of classes (its
    pixels those of `y_true`, ids), says so: the mismatch is there, not in
    `y_true`."""
    if y_pred_shape is None:  # no prediction at hand (`MaskVisualizer`)
        return ""
    pixels, channels = tuple(y_pred_shape[:-1]), y_pred_shape[-1:]
    if channels in ((classes,), (1,), ()):
        return ""
    if true_shape not in (pixels, pixels + (1,)):
        return ""
    return (
        f" If `y_pred` holds scores, it needs {classes} channels (one per "
        f"class; 1 for binary), not {channels[0]}: check `num_classes`."
    )


def _target_form(y_true, pixel_shape, classes, y_pred_shape, name="y_true"):
    """`("ids", ids)` (a trailing 1 dropped) or `("one_hot", y_true)`, with
    its pixels checked against `pixel_shape`; else the one error, naming
    `y_true` as `name`."""
    y_true = mask_tensor(y_true)
    rank, shape = len(pixel_shape), tuple(y_true.shape)
    if len(shape) == rank:
        form, values = "ids", y_true
    elif len(shape) == rank + 1 and shape[-1] == 1:
        form, values = "ids", y_true[..., 0]
    elif len(shape) == rank + 1 and shape[-1] == classes:
        form, values = "one_hot", y_true
    else:
        pred = "`y_pred`" if name == "y_true" else "the model's output"
        what = f"Cannot match `{name}` to {pred}: expected `{name}` as"
        if y_pred_shape is None:  # No prediction (`MaskVisualizer`).
            what = f"`{name}` must be"
        raise ValueError(
            f"{what} class ids {pixel_shape} or {pixel_shape + (1,)}, or one-hot "
            f"{pixel_shape + (classes,)} ({classes} classes, all-zero rows for "
            f"ignored pixels).{_channels_hint(shape, classes, y_pred_shape)} "
            f"Received: {name} shape {shape}"
            + (f", y_pred shape {y_pred_shape}" if y_pred_shape is not None else "")
        )
    check_same_pixels(shape[:rank], pixel_shape, shape, y_pred_shape)
    return form, values


def _id_targets(values, classes, ignore_class):
    bad = bad_id_mask(values, classes, ignore_class)
    valid = ~bad
    if ignore_class is not None:
        valid = valid & (values != ignore_class)
    return as_int_ids(values), valid, bad


def target_ids(
    y_true, pixel_shape, classes, ignore_class=None, y_pred_shape=None, name="y_true"
):
    """`(ids, valid, bad)` of `y_true` for predictions over `pixel_shape`:
    int32 ids (meaningless where not `valid`), True where the pixel has a
    class, True where a value is neither a class id nor `ignore_class` (see
    `raise_on_bad_ids`). One-hot rows that are all zero are ignored. Errors
    name `y_true` as `name`."""
    pixel_shape = tuple(pixel_shape)
    form, values = _target_form(y_true, pixel_shape, classes, y_pred_shape, name)
    if form == "ids":
        return _id_targets(values, classes, ignore_class)
    target, valid, bad = _one_hot_targets(values, name)
    return class_argmax(values), valid, bad


def target_one_hot(y_true, pixel_shape, classes, ignore_class=None, y_pred_shape=None):
    """`(target, valid, bad)`: float32 one-hot targets `pixel_shape + (C,)`
    (a one-hot `y_true` as it is, soft labels included; zero rows where not
    valid), and `valid`, `bad` as in `target_ids`."""
    pixel_shape = tuple(pixel_shape)
    form, values = _target_form(y_true, pixel_shape, classes, y_pred_shape)
    if form == "one_hot":
        return _one_hot_targets(values)
    ids, valid, bad = _id_targets(values, classes, ignore_class)
    # Id 0 where not valid, then zeroed: -1 is refused by one_hot on torch.
    target = ops.one_hot(ops.where(valid, ids, 0), classes, dtype="float32")
    return target * ops.cast(valid, "float32")[..., None], valid, bad


def _one_hot_targets(values, name="y_true"):
    """`(target, valid, bad)` of a one-hot `y_true`: all-zero rows are
    ignored pixels, rows that are not one-hot are bad."""
    target, bad = _one_hot_rows(values, name)
    valid = (ops.sum(target, axis=-1) > 0) & ~bad
    return target, valid, bad


_ONE_HOT_MARGIN = 0.01


def _one_hot_rows(values, name):
    """`(target, bad)`: a one-hot `y_true` as float32, and True where its
    row holds a value outside [0, 1] or NaN: not one-hot, whatever its
    shape says (colour masks of 3 classes are `(..., H, W, 3)` of 0..255,
    and their arg-max a plausible class). Raises when the values are at
    hand; traced code counts such pixels as bad (out of range, NaN loss)."""
    target = ops.cast(values, "float32")
    # A margin for soft labels rounded in 16 bits (bfloat16's step above 1
    # is 1/128); NaN fails both comparisons.
    inside = (target >= -_ONE_HOT_MARGIN) & (target <= 1 + _ONE_HOT_MARGIN)
    bad = ~ops.all(inside, axis=-1)
    if concrete_value(ops.any(bad)):
        found = concrete_value(target)[concrete_value(bad)]
        nan = np.isnan(found)
        margin = _ONE_HOT_MARGIN
        outside = found[~nan & ((found < -margin) | (found > 1 + margin))]
        what = " and ".join(
            text
            for text, shown in (
                (f"values outside [0, 1] ({shown_values(outside)})", outside.size),
                ("NaN", nan.any()),
            )
            if shown
        )
        raise ValueError(
            f"`{name}` has the shape of one-hot masks ({tuple(values.shape)}: "
            f"the last axis one per class), but holds {what}: a one-hot row "
            "holds 0 and 1 (soft labels in between; all zeros for an ignored "
            "pixel). Colour masks (RGB) need their palette: "
            "`seglayers.OneHotMask(num_classes, palette=...)`; class ids go as "
            "`(..., H, W)` or `(..., H, W, 1)`. "
            f"Received: {name} of shape {tuple(values.shape)}"
        )
    return target, bad


def check_same_pixels(true_shape, pixel_shape, y_true_shape, y_pred_shape):
    """Raises if the target's pixels are not the prediction's."""
    if any(
        a is not None and b is not None and a != b
        for a, b in zip(tuple(true_shape), tuple(pixel_shape))
    ):
        raise ValueError(
            "`y_true` and `y_pred` cover different pixels: "
            f"{tuple(true_shape)} against {tuple(pixel_shape)}. Resize the masks "
            "to the model's output size (nearest neighbour). Received: y_true "
            f"shape {tuple(y_true_shape)}, y_pred shape {y_pred_shape}"
        )
