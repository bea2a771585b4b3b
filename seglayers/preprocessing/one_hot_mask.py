import keras
import numpy as np
from keras import ops

from seglayers._api import register
from seglayers._validation import check_ignore_class, check_positive_int


def _eager_numpy(x):
    """`x` as a numpy array when it has a value now; None inside a trace."""
    try:
        return ops.convert_to_numpy(x)
    except Exception:  # A symbolic tensor (tf.function, tf.data, jax.jit).
        return None


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

    Ids outside `[0, num_classes)` that are not `ignore_class`, and colours
    not in `palette`, are never mapped to a class. Called eagerly (a model
    on concrete data, or `layer(mask)` outside `tf.data`), the layer raises a
    `ValueError` naming the bad values. Inside a traced function
    (`tf.data.Dataset.map`, a compiled model) there is nothing to raise
    with, and such pixels become all-zero rows, like ignored pixels; the
    metrics count them in `out_of_range_count` only if they see the ids, so
    validate a new data set eagerly once (`segmentation_dataset_from_directory`
    checks the ids as it loads).

    `sample_weights(mask)` gives the matching per-pixel weights (0 on ignored
    pixels, optionally per-class weights) to pass as `sample_weight`, since
    Keras's `class_weight` does not support 3-D targets.

    Inside `tf.data` the layer needs the TensorFlow backend (it is built on
    `keras.ops`); on other backends use it inside the model.

    Args:
        num_classes: int, the number of classes.
        ignore_class: int or `None`, the id of unlabelled pixels (e.g. 255).
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
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes)
        check_ignore_class(ignore_class)
        if palette is not None:
            palette = _check_palette(palette, num_classes, ignore_class)
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.palette = palette
        self.built = True

    def call(self, inputs):
        if self.palette is not None:
            one_hot = self._palette_one_hot(inputs)
        else:
            ids = self._ids(inputs)
            self._check_ids(ids)
            valid = self._labelled(ids) & (ids >= 0) & (ids < self.num_classes)
            # -1 gives an all-zero row on every backend (Keras handles it for
            # torch); an id >= num_classes would fail on torch, hence the where.
            return ops.one_hot(
                ops.where(valid, ids, -1), self.num_classes, dtype=self.compute_dtype
            )
        return ops.cast(one_hot, self.compute_dtype)

    def sample_weights(self, inputs, class_weights=None):
        """Per-pixel weights `(..., H, W)`: 0 where ignored, else 1 or the
        weight of the pixel's class (`class_weights`, one per class)."""
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
        ids = ops.convert_to_tensor(inputs)
        if ids.shape and ids.shape[-1] == 1 and len(ids.shape) >= 3:
            ids = ids[..., 0]
        if "float" in keras.backend.standardize_dtype(ids.dtype):
            ids = ops.round(ids)
        return ops.cast(ids, "int32")

    def _labelled(self, ids):
        if self.ignore_class is None:
            return ops.ones_like(ids, dtype="bool")
        return ids != self.ignore_class

    def _check_ids(self, ids):
        values = _eager_numpy(ids)
        if values is None:
            return
        bad = (values < 0) | (values >= self.num_classes)
        if self.ignore_class is not None:
            bad &= values != self.ignore_class
        bad_values = np.unique(values[bad])
        if bad_values.size:
            ignore = (
                f"and `ignore_class`={self.ignore_class} "
                if self.ignore_class is not None
                else ""
            )
            raise ValueError(
                f"The mask holds class ids {bad_values[:10].tolist()} outside "
                f"[0, {self.num_classes}) {ignore}for num_classes="
                f"{self.num_classes}. Raise `num_classes`, set `ignore_class` "
                "to the id of unlabelled pixels (often 255), or fix the masks."
            )

    def _palette_one_hot(self, inputs):
        colours = ops.cast(ops.convert_to_tensor(inputs), "int32")
        if colours.shape[-1] != 3:
            raise ValueError(
                "With a `palette`, masks must be RGB, (..., H, W, 3). "
                f"Received: mask shape {tuple(colours.shape)}"
            )
        palette = ops.convert_to_tensor(self.palette, "int32")
        # (..., H, W, 1, 3) == (K, 3) → (..., H, W, K): exact colour matches.
        matches = ops.all(colours[..., None, :] == palette, axis=-1)
        one_hot = matches[..., : self.num_classes]
        values = _eager_numpy(colours)
        if values is not None:
            unknown = ~_eager_numpy(ops.any(matches, axis=-1))
            if unknown.any():
                found = np.unique(values[unknown].reshape(-1, 3), axis=0)
                raise ValueError(
                    f"The mask holds colours not in `palette`: "
                    f"{found[:10].tolist()}. Add them to `palette` (index = "
                    "class id; one extra colour at the end for ignored "
                    "pixels) or fix the masks."
                )
        return one_hot

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


def _check_palette(palette, num_classes, ignore_class):
    colours = [list(c) for c in palette] if isinstance(palette, (list, tuple)) else []
    valid = colours and all(
        len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in colours
    )
    allowed = (
        (num_classes, num_classes + 1) if ignore_class is not None else (num_classes,)
    )
    if not valid or len(colours) not in allowed:
        raise ValueError(
            f"`palette` must be a list of {num_classes} `[r, g, b]` colours "
            "(ints in 0..255), index = class id"
            + (
                ", plus optionally the colour of ignored pixels"
                if ignore_class is not None
                else ""
            )
            + f". Received: palette={palette!r}"
        )
    if len({tuple(c) for c in colours}) != len(colours):
        raise ValueError(
            f"`palette` repeats a colour, so it cannot tell those classes apart. "
            f"Received: palette={palette!r}"
        )
    return colours
