import keras
import numpy as np
from keras import ops

from seglayers._api import register
from seglayers._masks import (
    as_int_ids,
    bad_id_mask,
    bad_ids_message,
    bitcast,
    int32_ids,
    mask_tensor,
    raise_on_bad_ids,
)
from seglayers._palettes import check_palette, palette_ids, unknown_colour_id
from seglayers._validation import (
    check_class_weights,
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
    concrete_value,
)


@register
class OneHotMask(keras.layers.Layer):
    """One-hot encodes segmentation masks, with an ignore label.

    Turns class-id masks `(..., H, W)` or `(..., H, W, 1)` (any integer or
    float dtype), or RGB palette masks `(..., H, W, 3)` when `palette` is
    given, into one-hot masks `(..., H, W, num_classes)` in the layer's
    dtype. The class id of a pixel is its value (or its colour's index in
    `palette`), the same in every image: never numbered per image as
    `np.unique` would. Pixels labelled `ignore_class` become all-zero rows,
    which seglayers' metrics and losses leave out.

    Ids outside `[0, num_classes)` that are not `ignore_class`, fractions
    (a float mask resized with bilinear interpolation: 0.5 is no class, and
    is never rounded to one), and colours not in `palette` are never mapped
    to a class. Called eagerly (a model on concrete data, or `layer(mask)`
    outside `tf.data`), the layer raises a `ValueError` naming the bad
    values. Inside a TensorFlow graph (`tf.data.Dataset.map`, a compiled
    model) the graph fails when it runs, with an `InvalidArgumentError`
    listing them. Inside `jax.jit`, and in a model compiled with
    `jit_compile=True` (XLA drops TensorFlow's assertions; Keras turns it on
    by default for TensorFlow on a GPU), nothing can fail, and such pixels
    become all-zero rows, like ignored pixels: validate a new data set
    eagerly once (`segmentation_dataset_from_directory` checks the ids as it
    loads), or one-hot the masks in `tf.data`, where the check runs.

    Masks with several channels (already one-hot, or colours without a
    `palette`) are refused with a `ValueError` when the layer is called.

    `sample_weights(mask)` gives the matching per-pixel weights (0 on ignored
    pixels, optionally per-class weights) to pass as `sample_weight`, since
    Keras's `class_weight` does not support 3-D targets.

    Inside `tf.data` the layer needs the TensorFlow backend (it is built on
    `keras.ops`); on other backends use it inside the model.

    Args:
        num_classes: int, the number of classes.
        ignore_class: int or `None`, the id of unlabelled pixels (e.g. 255);
            not a class id.
        palette: optional list of `[r, g, b]` colours, index = class id, for
            RGB masks: `num_classes` colours, plus optionally one more, the
            colour of ignored pixels (then `ignore_class` must be set).
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Input shape:
        `(..., H, W)` or `(..., H, W, 1)` ids, or `(..., H, W, 3)` colours.

    Output shape:
        `(..., H, W, num_classes)`.

    Example:

    >>> layer = OneHotMask(num_classes=3, ignore_class=255)
    >>> keras.ops.convert_to_numpy(layer(np.array([[0, 2, 255]]))).tolist()
    [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]
    >>> keras.ops.convert_to_numpy(layer.sample_weights(np.array([[0, 2, 255]])))
    array([[1., 1., 0.]], dtype=float32)
    """

    def __init__(self, num_classes, ignore_class=None, palette=None, **kwargs):
        # Not autocast: under a mixed policy Keras would cast float ids to
        # bfloat16 before `call`, and 257 became class 256.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        num_classes = check_positive_int("num_classes", num_classes)
        ignore_class = check_ignore_not_a_class(
            check_ignore_class(ignore_class), num_classes
        )
        if palette is not None:
            palette = check_palette(palette, num_classes, ignore_class)
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.palette = palette
        self.built = True

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "iu":
            # Before Keras converts them: JAX, without 64-bit types, wraps
            # int64 ids, and 2**32 + 1 became class 1.
            inputs = int32_ids(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        inputs = mask_tensor(inputs, "inputs")
        if self.palette is not None:
            # Colours not in the palette raise eagerly; in a graph, below.
            ids = palette_ids(inputs, self.palette, self.num_classes, self.ignore_class)
            ids = self._check_colours(ids)
        else:
            ids = self._ids(inputs)
        if keras.backend.backend() == "tensorflow":
            return self._identity_rows(ids)
        valid = self._labelled(ids) & (ids >= 0) & (ids < self.num_classes)
        # -1 gives an all-zero row on every backend (Keras handles it for
        # torch); an id >= num_classes would fail on torch, hence the where.
        return ops.one_hot(
            ops.where(valid, ids, -1), self.num_classes, dtype=self.compute_dtype
        )

    def _identity_rows(self, ids):
        """One-hot rows gathered from an identity matrix with one more,
        all-zero row, which every id outside `[0, num_classes)` indexes
        (`ignore_class`, -1): in tf.data on CPU, 32 masks of 256² take about
        20 ms of CPU against 25 ms for `tf.one_hot`, and 29 ms for the former
        `where` then `one_hot` with its check (benchmarks/README.md). As
        uint32, negative ids are larger than any class, so one `minimum`
        sends them all to that row."""
        rows = ops.minimum(bitcast(ids, "uint32"), self.num_classes)
        table = ops.eye(
            self.num_classes + 1, self.num_classes, dtype=self.compute_dtype
        )
        return ops.take(table, bitcast(rows, "int32"), axis=0)

    def sample_weights(self, inputs, class_weights=None):
        """Per-pixel weights `(..., H, W)`: 0 where ignored, else 1 or the
        weight of the pixel's class (`class_weights`: one per class, as a
        list, a 1-D array or a dict `{class id: weight}`)."""
        # Weights are checked where they have values (a NaN weight made
        # every pixel NaN): lists, numpy arrays and eager tensors; a tensor
        # in a traced function (tf.data) passes as it is.
        if hasattr(class_weights, "dtype") and not isinstance(
            class_weights, (np.ndarray, np.generic)
        ):
            class_weights = _values_or_tensor(class_weights)
        if not hasattr(class_weights, "dtype") or isinstance(
            class_weights, (np.ndarray, np.generic)
        ):
            class_weights = check_class_weights(class_weights)
            if class_weights is not None and not np.isfinite(class_weights).all():
                raise ValueError(
                    "`class_weights` must be finite: an infinite weight makes "
                    "the weight of every other class's pixels NaN (0 * inf). "
                    f"Received: class_weights={class_weights}"
                )
        one_hot = ops.cast(self(inputs), "float32")
        if class_weights is None:
            return ops.sum(one_hot, axis=-1)
        if len(class_weights) != self.num_classes:
            raise ValueError(
                f"`class_weights` needs {self.num_classes} values, one per class. "
                f"Received: class_weights={list(class_weights)}"
            )
        return ops.sum(one_hot * ops.convert_to_tensor(class_weights, "float32"), -1)

    def _ids(self, inputs):
        """int32 ids `(..., H, W)`; -1 where a float value is no whole id."""
        values = ops.convert_to_tensor(inputs)
        self._check_shape(tuple(values.shape))
        if len(values.shape) >= 3 and values.shape[-1] == 1:
            values = values[..., 0]
        if "float" not in keras.backend.standardize_dtype(values.dtype):
            values = ops.cast(values, "int32")  # uint8 cannot hold 255 + 1.
        return as_int_ids(self._check_values(values))

    def _labelled(self, ids):
        if self.ignore_class is None:
            return ops.ones_like(ids, dtype="bool")
        return ids != self.ignore_class

    def _check_shape(self, shape):
        """Refuses masks with several channels (one-hot, colour or unknown),
        or whose last axis has no known size, which could be channels or W."""
        if len(shape) >= 3 and shape[-1] is None:
            raise ValueError(
                "`OneHotMask` cannot tell whether this mask's last axis, of "
                "unknown size, is a channel axis: decode masks with one "
                "channel (`tf.io.decode_png(data, channels=1)`; the default, "
                "channels=0, leaves it unknown) or set their shape "
                f"(`mask.set_shape((None, None, 1))`). Received: mask shape {shape}"
            )
        if len(shape) < 3 or shape[-1] == 1:
            return
        channels = shape[-1]
        if len(shape) == 3 and channels not in (3, 4, self.num_classes):
            return  # Ids `(batch, H, W)`.
        if channels == self.num_classes:
            what = (
                "as many as num_classes, so it looks one-hot already. Pass "
                "one-hot masks to seglayers' losses and metrics as they are "
                "(all-zero rows are ignored pixels)"
            )
        elif channels in (3, 4):
            what = "so it looks like a colour mask. Pass `palette` to map colours"
        else:
            what = "but class ids have one"
        raise ValueError(
            f"`OneHotMask` takes class ids `(..., H, W)` or `(..., H, W, 1)`; "
            f"this mask has {channels} channels, {what}. Ids of shape "
            "`(batch, H, W)` with W equal to that need a channel axis: "
            f"`(batch, H, W, 1)`. Received: mask shape {shape}"
        )

    def _check_values(self, values):
        """`values`, after raising (eagerly) or failing when the graph runs
        (TensorFlow) on any that is no class id; elsewhere they become zero
        rows."""

        def bad():
            return bad_id_mask(values, self.num_classes, self.ignore_class)

        hint = (
            " For binary masks (ids 0 and 1) and one sigmoid channel the ids "
            "are the target already: skip OneHotMask."
            if self.num_classes == 1
            else ""
        )
        if concrete_value(values) is not None:
            raise_on_bad_ids(
                values, bad(), self.num_classes, self.ignore_class, "The mask", hint
            )
            return values
        if keras.backend.backend() != "tensorflow":
            return values  # A jax.jit trace has no way to fail.
        from seglayers.data.graph_checks import assert_none_bad

        message = bad_ids_message(
            f"OneHotMask(num_classes={self.num_classes}): the mask",
            self.num_classes,
            self.ignore_class,
            hint=hint,
        )
        return assert_none_bad(values, bad, message, self._any_bad(values))

    def _check_colours(self, ids):
        """`ids` of a palette mask; inside a TensorFlow graph, the graph fails
        when it runs if a colour was not in the palette (eagerly,
        `palette_ids` has raised already; in `jax.jit` they are zero rows)."""
        if concrete_value(ids) is not None or keras.backend.backend() != "tensorflow":
            return ids
        from seglayers.data.graph_checks import assert_none_bad

        unknown = unknown_colour_id(self.ignore_class)
        message = (
            f"OneHotMask(num_classes={self.num_classes}): the mask holds colours "
            f"not in `palette` (each shown below as id {unknown}; call the layer "
            "on the mask outside tf.data to list the colours). Add them to "
            "`palette` (index = class id; one extra colour at the end for "
            "ignored pixels) or fix the masks."
        )
        return assert_none_bad(ids, ids == unknown, message)

    def _any_bad(self, values):
        """Whether any of `values` is no class id, as one scalar: for ids,
        one `max` over their uint32 view (negative ids are huge there), not
        a boolean per pixel, which cost 8% of a one-hot in tf.data."""
        if "float" in keras.backend.standardize_dtype(values.dtype):
            return ops.any(bad_id_mask(values, self.num_classes, self.ignore_class))
        codes = bitcast(values, "uint32")
        if self.ignore_class is not None:
            codes = ops.where(values == self.ignore_class, 0, codes)
        return ops.max(codes, initial=0) >= self.num_classes

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.palette is not None or (len(shape) >= 3 and shape[-1] == 1):
            shape = shape[:-1]
        return shape + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "ignore_class": self.ignore_class,
                "palette": self.palette,
            }
        )
        return config


def _values_or_tensor(tensor):
    """`tensor`'s values as numpy where it has them (eagerly), else itself."""
    values = concrete_value(tensor)
    return tensor if values is None else values
