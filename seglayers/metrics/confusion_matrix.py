"""The streaming confusion matrix every seglayers metric is a view of.

Counting: pixel `(true, pred)` adds one to bin `true * num_classes + pred`
of a histogram. The op depends on the backend, as measured in
`benchmarks/metric_update.py`: `bincount` on TensorFlow (about 8× faster
than `unsorted_segment_sum` on CPU, and Keras's own `MeanIoU` uses a
scatter), `segment_sum` on JAX (`keras.ops.bincount` cannot be compiled
there, and `segment_sum` is as fast as `jnp.bincount`), `bincount` elsewhere.

Counts are exact integers: float32 counts stop at 2**24 (16.7 M pixels, a
few batches) and JAX has no int64 by default, so each cell is kept as two
int32 variables, `high * 2**20 + low`, good for 2**51 pixels. All state is
counts, summed across replicas by `tf.distribute` and `keras.distribution`.
"""

import warnings

import keras
from keras import ops

from seglayers._validation import check_choice, check_ignore_class, check_positive_int

Y_PRED_FORMATS = ("auto", "scores", "ids")

_LOW_BITS = 20
_LOW_LIMIT = 2**_LOW_BITS


def count_bins(indices, length):
    """Histogram of int32 `indices` (any shape) in `[0, length)`: int32."""
    indices = ops.reshape(indices, (-1,))
    if keras.backend.backend() == "jax":
        return ops.segment_sum(
            ops.ones_like(indices), indices, num_segments=length, sorted=False
        )
    return ops.cast(ops.bincount(indices, minlength=length), "int32")


def class_argmax(scores):
    """`argmax(scores, axis=-1)` as int32, first index on ties.

    `keras.ops.argmax` on floats first rewrites -0.0 (a flush-to-zero fix),
    an extra pass that, on 16×256×256×21 logits, makes it 15× slower than
    XLA's own argmax on JAX CPU and 2× slower than `tf.argmax` on TensorFlow
    CPU (benchmarks/metric_update.py). The sign of zero does not matter for
    class scores, so:
    - JAX (and others): argmax of an order-preserving int32 key of the float
      bits (negative floats get their magnitude bits flipped): 4.8 ms, not 47.
    - TensorFlow: the first index reaching the maximum, via a max and a
      weighted max: 34 ms, not 60 (TensorFlow's int argmax is slow on CPU).
    """
    if keras.backend.backend() == "tensorflow":
        classes = scores.shape[-1]
        best = ops.max(scores, axis=-1, keepdims=True)
        reverse_index = ops.arange(classes, 0, -1, dtype="int32")
        return classes - ops.max(ops.where(scores == best, reverse_index, 0), axis=-1)
    bits = ops.view(ops.cast(scores, "float32"), "int32")
    key = ops.where(bits < 0, ops.bitwise_xor(bits, 0x7FFFFFFF), bits)
    return ops.cast(ops.argmax(key, axis=-1), "int32")


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base class: a `num_classes × num_classes` confusion matrix of pixels.

    Rows are true classes, columns predicted classes. Subclasses implement
    `result()` from `self.confusion_matrix()`.

    `update_state(y_true, y_pred, sample_weight=None)` accepts:

    - `y_pred`: scores `(..., H, W, num_classes)` (logits, probabilities or
      one-hot; the class is the arg-max), one sigmoid channel
      `(..., H, W, 1)` when `num_classes` is 1 or 2 (class 1 where it
      exceeds `threshold`), or class ids `(..., H, W)` / `(..., H, W, 1)`.
      `y_pred_format="auto"` tells them apart by dtype and shape: floating
      with `num_classes` channels (or one channel for binary) means scores.
      Pass `"scores"` or `"ids"` to say so explicitly.
    - `y_true`: class ids `(..., H, W)` or `(..., H, W, 1)`, or one-hot
      `(..., H, W, num_classes)`, whose all-zero rows (as `OneHotMask` makes
      for ignored pixels) count nowhere.
    - `sample_weight`: optional, broadcastable to the pixels; a weight of 0
      leaves the pixel out, any other weight counts it once (the state holds
      exact integer counts).

    Pixels whose true class is `ignore_class` count nowhere. A true or
    predicted id outside `[0, num_classes)` that is not `ignore_class` is not
    counted as any class either; such pixels are tallied in
    `out_of_range_count`, and reading `result()` eagerly warns about them.
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_names=None,
        threshold=0.5,
        y_pred_format="auto",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        check_positive_int("num_classes", num_classes)
        check_ignore_class(ignore_class)
        if ignore_class is not None and 0 <= ignore_class < num_classes:
            warnings.warn(
                f"`ignore_class`={ignore_class} is also a valid class id "
                f"(num_classes={num_classes}); that class will never be counted.",
                stacklevel=2,
            )
        # Binary segmentation with one sigmoid channel is two classes.
        self._matrix_size = max(num_classes, 2)
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != self._matrix_size:
                raise ValueError(
                    f"`class_names` needs one name per class, {self._matrix_size} "
                    f"for num_classes={num_classes}. "
                    f"Received: class_names={class_names}"
                )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(
                "`threshold` must be a number, e.g. 0.5 for probabilities or 0 "
                f"for logits. Received: threshold={threshold!r}"
            )
        check_choice("y_pred_format", y_pred_format, Y_PRED_FORMATS)

        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.class_names = class_names
        self.threshold = float(threshold)
        self.y_pred_format = y_pred_format

        size = self._matrix_size
        # One histogram: size * size cells, then out-of-range, then ignored.
        self._length = size * size + 2
        self.counts_low = self.add_variable(
            (self._length,), "zeros", dtype="int32", name="counts_low"
        )
        self.counts_high = self.add_variable(
            (self._length,), "zeros", dtype="int32", name="counts_high"
        )

    # --- input interpretation -------------------------------------------

    def _scores_format(self, y_pred):
        if self.y_pred_format != "auto":
            return self.y_pred_format == "scores"
        channels = y_pred.shape[-1]
        floating = "float" in keras.backend.standardize_dtype(y_pred.dtype)
        if channels == 1:
            return floating and self.num_classes <= 2
        return floating and channels == self.num_classes

    def _predicted_ids(self, y_pred):
        if self._scores_format(y_pred):
            channels = y_pred.shape[-1]
            if channels == 1:
                return ops.cast(y_pred[..., 0] > self.threshold, "int32")
            if channels != self.num_classes:
                raise ValueError(
                    f"`y_pred` scores need {self.num_classes} channels (one per "
                    f"class) or 1 for binary. Received: y_pred shape "
                    f"{tuple(y_pred.shape)}"
                )
            return class_argmax(y_pred)
        if y_pred.shape[-1] == 1:
            y_pred = y_pred[..., 0]
        return _as_int_ids(y_pred)

    def _true_ids(self, y_true, pred_ids):
        """True class ids shaped like `pred_ids`, and where they are ignored."""
        rank, pred_rank = len(y_true.shape), len(pred_ids.shape)
        if rank == pred_rank + 1 and y_true.shape[-1] == 1:
            return self._with_ignored(_as_int_ids(y_true[..., 0]))
        if rank == pred_rank + 1 and y_true.shape[-1] == self._matrix_size:
            # One-hot: all-zero rows are ignored pixels.
            unlabelled = ops.sum(ops.cast(y_true, "float32"), axis=-1) == 0
            return class_argmax(y_true), unlabelled
        if rank == pred_rank:
            return self._with_ignored(_as_int_ids(y_true))
        raise ValueError(
            "Cannot match `y_true` to `y_pred`: expected `y_true` as class ids "
            f"{tuple(pred_ids.shape)} or {tuple(pred_ids.shape) + (1,)}, or "
            f"one-hot {tuple(pred_ids.shape) + (self._matrix_size,)}. Received: "
            f"y_true shape {tuple(y_true.shape)}, with class ids of shape "
            f"{tuple(pred_ids.shape)} read from y_pred. Pass `y_pred_format` "
            "if y_pred was read wrongly."
        )

    def _with_ignored(self, ids):
        if self.ignore_class is None:
            return ids, ops.zeros_like(ids, dtype="bool")
        return ids, ids == self.ignore_class

    # --- state ------------------------------------------------------------

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        pred = self._predicted_ids(y_pred)
        true, ignored = self._true_ids(y_true, pred)
        _check_same_shape(true, pred, y_true, y_pred)
        size = self._matrix_size
        if sample_weight is not None:
            weight = ops.convert_to_tensor(sample_weight)
            if len(weight.shape) == len(true.shape) + 1 and weight.shape[-1] == 1:
                weight = weight[..., 0]
            weight = ops.broadcast_to(weight, ops.shape(true))
            ignored = ops.logical_or(ignored, weight == 0)
        in_range = (true >= 0) & (true < size) & (pred >= 0) & (pred < size)
        bins = ops.where(in_range, true * size + pred, size * size)
        bins = ops.where(ignored, size * size + 1, bins)
        self._add(count_bins(bins, self._length))

    def _add(self, counts):
        low = self.counts_low + counts
        carry = low // _LOW_LIMIT
        self.counts_low.assign(low - carry * _LOW_LIMIT)
        self.counts_high.assign(self.counts_high + carry)

    def _totals(self):
        """Float32 counts of every bin (exact up to 2**24, then 1e-7 rel.)."""
        return ops.cast(self.counts_high, "float32") * float(_LOW_LIMIT) + ops.cast(
            self.counts_low, "float32"
        )

    def confusion_matrix(self):
        """The `(n, n)` float32 matrix of counts; rows true, columns predicted."""
        size = self._matrix_size
        return ops.reshape(self._totals()[: size * size], (size, size))

    @property
    def out_of_range_count(self):
        """Pixels with an id outside `[0, num_classes)`, not counted (int)."""
        totals = ops.convert_to_numpy(self._totals())
        return int(totals[-2])

    def _warn_out_of_range(self):
        try:
            count = self.out_of_range_count
        except Exception:  # Inside a traced function: no value to report.
            return
        if count:
            warnings.warn(
                f"{self.name}: {count} pixels had a class id outside [0, "
                f"{self._matrix_size}) that is not `ignore_class`="
                f"{self.ignore_class}; they were not counted. Check "
                "`num_classes`, or set `ignore_class` to the id of unlabelled "
                "pixels.",
                stacklevel=3,
            )

    def reset_state(self):
        # ops.zeros, not ops.zeros_like: JAX cannot read a Keras variable's dtype.
        self.counts_low.assign(ops.zeros((self._length,), "int32"))
        self.counts_high.assign(ops.zeros((self._length,), "int32"))

    def _per_class_logs(self, prefix, values):
        names = self.class_names or [str(i) for i in range(self._matrix_size)]
        return {f"{prefix}/{name}": values[i] for i, name in enumerate(names)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "ignore_class": self.ignore_class,
                "class_names": self.class_names,
                "threshold": self.threshold,
                "y_pred_format": self.y_pred_format,
            }
        )
        return config


def _as_int_ids(ids):
    if "float" in keras.backend.standardize_dtype(ids.dtype):
        ids = ops.round(ids)
    return ops.cast(ids, "int32")


def _check_same_shape(true, pred, y_true, y_pred):
    true_shape, pred_shape = tuple(true.shape), tuple(pred.shape)
    if len(true_shape) != len(pred_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(true_shape, pred_shape)
    ):
        raise ValueError(
            "`y_true` and `y_pred` cover different pixels: class ids of shape "
            f"{true_shape} against {pred_shape}. Received: y_true shape "
            f"{tuple(y_true.shape)}, y_pred shape {tuple(y_pred.shape)}. Resize "
            "the masks to the model's output size (nearest neighbour)."
        )


def safe_divide(numerator, denominator):
    """`numerator / denominator`, NaN where the denominator is 0."""
    return ops.where(
        denominator > 0,
        numerator / ops.maximum(denominator, 1.0),
        float("nan"),
    )


def nan_mean(values):
    """Mean of the non-NaN entries (NaN if none)."""
    present = ops.logical_not(ops.isnan(values))
    total = ops.sum(ops.where(present, values, 0.0))
    count = ops.sum(ops.cast(present, "float32"))
    return safe_divide(total, count)
