"""What masks and predictions mean: the one place that decides it.

`OneHotMask`, the metrics, the losses, the loaders, `MaskVisualizer` and the
command line call these functions and never re-derive them:

- targets (`target_ids`, `target_one_hot`): `seglayers._targets`, built on
  the dtypes and the id check here;
- predictions (`predicted_ids`): logits, probabilities or one-hot (arg-max),
  one sigmoid channel (`threshold`), or ids;
- the dtypes a mask may have (`mask_tensor`);
- the id check and its one message (`raise_on_bad_ids`);
- palettes: `seglayers._palettes` (`check_palette`, `palette_ids`).

Functions take tensors or numpy arrays and use `keras.ops` only (traced
code, XLA). Checks that need values raise only when they are at hand
(`concrete_value`); traced code gets `-1` ids and `bad` flags instead.
"""

import keras
import numpy as np
from keras import ops

from seglayers._validation import (
    check_choice,
    check_threshold,
    concrete_value,
)

Y_PRED_FORMATS = ("auto", "scores", "ids")


def num_ids(num_classes):
    """How many class ids `num_classes` gives: one sigmoid channel is two."""
    return max(num_classes, 2)


def _floating(tensor):
    return "float" in keras.backend.standardize_dtype(tensor.dtype)


def int32_ids(values):
    """Integer ids (a numpy array or a tensor) as an int32 tensor. Ids
    beyond int32's range are first clipped to its edges, so they stay out
    of every class range: a cast alone wraps 2**32 + 1 to 1, a class (and
    JAX, without 64-bit types, wraps numpy's int64 as it converts it)."""
    dtype = keras.backend.standardize_dtype(values.dtype)
    if dtype in ("int64", "uint32", "uint64"):
        xp = np if isinstance(values, np.ndarray) else ops
        low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        if dtype == "uint64" and xp is ops:
            # `minimum` would take Keras's uint32 for uint64 and a Python int,
            # wrapping first; as int64, ids from 2**63 turn negative: no id.
            values, dtype = ops.cast(values, "int64"), "int64"
        if dtype == "int64":
            values = xp.maximum(values, low)
        values = xp.minimum(values, high)
        if xp is np:
            values = values.astype(np.int32)
    return ops.cast(ops.convert_to_tensor(values), "int32")


def bitcast(values, dtype):
    """`ops.view(values, dtype)` for a `dtype` of the same size. Keras's
    TensorFlow `view` (3.15) compares the last axis with -1 in Python, which
    fails in a graph where that axis is unknown (a PNG decoded in tf.data):
    viewed with a new last axis of 1, which is always known."""
    return ops.squeeze(ops.view(ops.expand_dims(values, -1), dtype), -1)


def as_int_ids(values):
    """int32 ids; -1 for a float that is not a whole number (a mask resized
    with interpolation: never rounded into a plausible class) or NaN."""
    if not _floating(values):
        return int32_ids(values)
    values = ops.convert_to_tensor(values)
    whole = ops.round(values)
    # NaN != NaN, so NaN is not whole either.
    return ops.where(whole == values, ops.cast(whole, "int32"), -1)


def class_argmax(scores):
    """`argmax(scores, axis=-1)` as int32, first index on ties.

    `keras.ops.argmax` on floats first rewrites -0.0, an extra pass that
    makes it 15× slower than XLA's argmax on JAX CPU and 2× slower than
    `tf.argmax` on TensorFlow CPU (16×256×256×21 logits,
    benchmarks/metric_update.py). So JAX (and others) take the argmax of an
    order-preserving int32 key of the float bits (4.8 ms, not 47), with one
    key for -0.0 and 0.0 (a tie, as on TensorFlow: the key of -0.0 was below
    0.0's, and the backends disagreed on zero scores), TensorFlow the first
    index reaching the maximum via a weighted max (34 ms, not 60).
    """
    if 0 in scores.shape:  # An empty batch: Keras refuses the max of nothing.
        return ops.zeros(scores.shape[:-1], "int32")
    if keras.backend.backend() == "tensorflow":
        classes = scores.shape[-1]
        best = ops.max(scores, axis=-1, keepdims=True)
        reverse_index = ops.arange(classes, 0, -1, dtype="int32")
        return classes - ops.max(ops.where(scores == best, reverse_index, 0), axis=-1)
    bits = bitcast(ops.cast(scores, "float32"), "int32")
    # Negative floats in reverse order, shifted up by one: -0.0 meets 0.0.
    key = ops.where(bits < 0, ops.bitwise_xor(bits, 0x7FFFFFFF) + 1, bits)
    return ops.cast(ops.argmax(key, axis=-1), "int32")


# --- targets ----------------------------------------------------------------


def bad_id_mask(values, classes, ignore_class=None):
    """True where `values` (ids, any dtype) are neither a whole class id in
    `[0, classes)` nor `ignore_class`. Works on numpy arrays and tensors."""
    bad = (values < 0) | (values >= classes)
    if "float" in keras.backend.standardize_dtype(values.dtype):
        bad = bad | (values % 1 != 0)  # Fractions; NaN % 1 is NaN, so NaN too.
    if ignore_class is not None:
        bad = bad & (values != ignore_class)
    return bad


def mask_tensor(mask, name="y_true"):
    """`mask` as a tensor of class ids or one-hot rows: booleans become ids
    0 and 1, integers int32 (`int32_ids`: ids beyond its range stay out of
    range); complex, string or object values raise a `TypeError` (a cast
    would drop the imaginary part, or fail deep in the backend)."""
    dtype = getattr(mask, "dtype", None)
    if dtype is None:
        mask = np.asarray(mask)
        dtype = mask.dtype
    try:
        dtype = keras.backend.standardize_dtype(dtype)
    except ValueError:  # numpy strings and objects have no Keras name.
        dtype = str(dtype)
    if dtype == "bool":
        return ops.cast(ops.convert_to_tensor(mask), "int32")
    if "int" in dtype:
        # uint8 ids compared with ignore_class=-1 would wrap to 255 (and with
        # 300 classes, `ids >= 300` to `ids >= 44`): compared as int32.
        return int32_ids(mask)
    if "int" not in dtype and "float" not in dtype:
        raise TypeError(
            f"`{name}` holds {dtype} values, but a mask holds class ids "
            "(integers, or floats that are whole numbers), booleans (ids 0 "
            "and 1) or one-hot rows. Convert the masks to integer ids, e.g. "
            f"`mask.astype('int32')`. Received: {name} dtype {dtype}"
        )
    return ops.convert_to_tensor(mask)


# --- the id check -------------------------------------------------------------


def shown_values(values):
    shown = []
    for value in np.unique(np.asarray(values, np.float64))[:10]:
        shown.append(int(value) if float(value).is_integer() else float(value))
    return shown


def bad_ids_message(subject, classes, ignore_class, values=None, hint=""):
    """The one message for ids that are no class: `values` (numpy) named,
    or said to follow (a TensorFlow graph assertion lists them)."""
    if values is None:
        found = (
            f"class ids outside [0, {classes}) or fractional ids (listed after "
            "this message)"
        )
    else:
        values = np.asarray(values)
        finite = np.isfinite(values)
        # `inf % 1` is NaN, with a numpy RuntimeWarning: finite values only.
        whole = finite & (np.where(finite, values, 0) % 1 == 0)
        groups = (
            (f"class ids {{}} outside [0, {classes})", values[whole]),
            ("fractional ids {}", values[finite & ~whole]),
            ("NaN or infinite ids {}", values[~finite]),
        )
        found = " and ".join(
            text.format(shown_values(group)) for text, group in groups if group.size
        )
    ignore = (
        f"`ignore_class` is {ignore_class}"
        if ignore_class is not None
        else "no `ignore_class` is set"
    )
    return (
        f"{subject} holds {found}, and {ignore}. Raise "
        "the number of classes, set `ignore_class` to the id of unlabelled "
        "pixels (often 255), or fix the masks: resize them with nearest "
        "neighbour, as bilinear interpolation blends ids into fractions."
        f"{hint} Received: ignore_class={ignore_class}"
    )


def raise_on_bad_ids(values, bad, classes, ignore_class, subject="`y_true`", hint=""):
    """Raises the `ValueError` of `bad_ids_message` if any of `bad` is True
    and the values are at hand; in traced code, does nothing."""
    if not concrete_value(ops.any(bad)):  # False, or None in traced code.
        return
    values = concrete_value(values)
    found = values[concrete_value(bad)]
    if classes == 2 and set(np.unique(found).tolist()) == {255}:
        if not (values == 1).any():
            # Not unlabelled pixels: an `ignore_class` of 255 would drop them.
            hint = (
                " These look like binary masks saved as 0 and 255: save (or "
                "map) them as 0 and 1, e.g. `mask // 255`." + hint
            )
    raise ValueError(bad_ids_message(subject, classes, ignore_class, found, hint))


# --- predictions --------------------------------------------------------------


def predicted_ids(
    y_pred, num_classes, threshold=0.5, y_pred_format="auto", name="y_pred"
):
    """Predicted int32 class ids, `-1` where a pixel has none (a NaN score).

    Scores `(..., C)` give the arg-max, one sigmoid channel (two ids) gives
    1 above `threshold`, ids `(...)` / `(..., 1)` are themselves. `"auto"`:
    floats with `num_ids(num_classes)` channels (or one, for binary) are
    scores. With a probability `threshold` (in (0, 1)), one channel outside
    [0, 1] (logits) raises a `ValueError` naming `name` when the values are
    at hand, and gives -1 in traced code.
    """
    check_choice("y_pred_format", y_pred_format, Y_PRED_FORMATS)
    y_pred = ops.convert_to_tensor(y_pred)
    classes, channels = num_ids(num_classes), y_pred.shape[-1]
    scores = y_pred_format == "scores" or (
        y_pred_format == "auto"
        and _floating(y_pred)
        and (channels == classes or (channels == 1 and classes == 2))
    )
    if not scores:
        return as_int_ids(y_pred[..., 0] if channels == 1 else y_pred)
    if channels == 1 and classes == 2:
        return _thresholded(y_pred[..., 0], threshold, name)
    if channels != classes:
        raise ValueError(
            f"`y_pred` scores need {classes} channels (one per class) or 1 for "
            "binary: check `num_classes` against the model's output channels. "
            f"Received: num_classes={classes}, y_pred shape {tuple(y_pred.shape)}"
        )
    return _without_nan_rows(y_pred, class_argmax(y_pred))


def _thresholded(scores, threshold, name):
    unknown = ops.isnan(scores)
    if 0 < threshold < 1:
        # A probability threshold applied to logits is silently wrong.
        outside = (scores < 0) | (scores > 1)
        if concrete_value(ops.any(outside)):
            values = ops.convert_to_numpy(scores)
            raise ValueError(
                f"`{name}`: `y_pred` has one channel with values outside [0, 1] "
                f"(from {np.nanmin(values):g} to {np.nanmax(values):g}), so it "
                f"holds logits, but `threshold`={threshold} is a probability. "
                "Pass threshold=0 for logits, or end the model with a sigmoid. "
                f"Received: threshold={threshold}"
            )
        unknown = unknown | outside
    ids = ops.cast(scores > threshold, "int32")
    return ops.where(unknown, -1, ids)


def _without_nan_rows(scores, ids):
    """`ids`, with -1 where a row of `scores` holds a NaN.

    The arg-max of a NaN row would be some class (XLA's max skips NaN). Rows
    are only searched when the sum of all scores is NaN: one reduction costs
    a third of a row-wise `isnan` on TensorFlow CPU (3.6 ms, not 9, on the
    60 ms arg-max of 16×256×256×21 logits), and the same on JAX.
    """
    if not _floating(scores):
        return ids

    def mark_nan_rows():
        return ops.where(ops.any(ops.isnan(scores), axis=-1), -1, ids)

    return ops.cond(ops.isnan(ops.sum(scores)), mark_nan_rows, lambda: ids)


def model_threshold(model, threshold=None):
    """`threshold`, or when `None` the one `model`'s one sigmoid channel
    takes: 0 for a model that says it outputs logits (`output_activation`
    None, as seglayers models can), else 0.5, as Keras's binary metrics do."""
    if threshold is not None:
        threshold = check_threshold(threshold, allow_none=True)
        activation = getattr(model, "output_activation", None)
        if activation in ("auto", "sigmoid", "softmax") and not 0 <= threshold <= 1:
            raise ValueError(
                f"`threshold`={threshold} cannot split this model's scores: "
                f"they are probabilities (output_activation={activation!r}), "
                "in [0, 1], all on one side of it. Pass a threshold "
                f"in [0, 1], e.g. 0.5 (the default). Received: threshold={threshold}"
            )
        return threshold
    logits = getattr(model, "output_activation", "auto") in (None, "linear")
    return 0.0 if logits else 0.5


def model_predicted_ids(model, outputs, threshold=None):
    """numpy class ids of `model`'s `outputs` `(..., C)`, read as the
    metrics read them (`predicted_ids` over `C` classes). `threshold=None`
    takes 0 for a model that says it outputs logits (`output_activation`
    None, as seglayers models can), else 0.5, as Keras's binary metrics do:
    the value range is never guessed from."""
    threshold = model_threshold(model, threshold)
    outputs = ops.convert_to_tensor(outputs)
    ids = predicted_ids(outputs, outputs.shape[-1], threshold, name="y_pred")
    return ops.convert_to_numpy(ids)
