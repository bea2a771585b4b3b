"""The streaming confusion matrix every seglayers metric is a view of.

Counting (`count_bins`) lives in `_counting.py`, with the measurements
behind it; what `y_true` and `y_pred` mean is `seglayers/_targets.py`'s and
`seglayers/_masks.py`'s, as for the losses.

Counts are exact integers: float32 counts stop at 2**24 (16.7 M pixels, a
few batches) and JAX has no int64 by default, so each cell is kept as two
int32 variables, `high * 2**20 + low`, good for 2**51 pixels. All state is
counts, summed across replicas by `tf.distribute` and `keras.distribution`.

Inputs that have no honest count never become one: true ids outside the
classes (a `ValueError` when the values are at hand), NaN predictions and
(in traced code) sample weights other than 0 and 1 are tallied in bins of
their own, reported when `result()` is read eagerly, and the last make the
result NaN.
"""

import warnings

import keras
from keras import ops

from seglayers._masks import (
    Y_PRED_FORMATS,
    num_ids,
    predicted_ids,
    raise_on_bad_ids,
)
from seglayers._targets import target_ids
from seglayers._validation import (
    check_choice,
    check_class_names,
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
    check_sample_weight,
    check_threshold,
    concrete_value,
)
from seglayers.metrics._counting import count_bins

_LOW_BITS = 20
_LOW_LIMIT = 2**_LOW_BITS
# Bins after the size * size cells.
_OUT_OF_RANGE, _IGNORED, _BAD_WEIGHT = 0, 1, 2


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
      with `max(num_classes, 2)` channels (or one channel for binary) means
      scores.
      Pass `"scores"` or `"ids"` to say so explicitly.
    - `y_true`: class ids `(..., H, W)` or `(..., H, W, 1)`, or one-hot
      `(..., H, W, max(num_classes, 2))`, whose all-zero rows (as `OneHotMask` makes
      for ignored pixels) count nowhere.
    - `sample_weight`: optional, one weight per sample `(batch,)` or per
      pixel `(batch, H, W)` / `(batch, H, W, 1)`; 0 leaves the pixel out, 1
      counts it. The state holds exact pixel counts, so other weights are
      refused (`ValueError` when the values are at hand; in traced code,
      such as `weighted_metrics` in `fit`, they make the result NaN). Weigh
      classes in the loss instead.

    Pixels whose true class is `ignore_class` count nowhere. A true id
    outside `[0, num_classes)` that is not `ignore_class`, or a float id
    that is not a whole number, raises the `ValueError` the losses raise
    when the values are at hand (eager calls); in traced code (`fit`) such
    pixels, predicted ids out of range and NaN predictions are counted as
    no class but tallied in `out_of_range_count`, and reading `result()`
    eagerly warns about them.
    One sigmoid channel with a `threshold` between 0 and 1 must hold
    probabilities: values outside [0, 1] (logits) raise a `ValueError`
    naming `threshold`, or in traced code count as out of range.
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
        _check_result_dtype(dtype)
        super().__init__(name=name, dtype=dtype)
        # Higher is better for every score here: Keras's callbacks read this
        # for `mode="auto"` (`EarlyStopping(monitor="val_mean_iou")`).
        self._direction = "up"
        num_classes = check_positive_int("num_classes", num_classes)
        ignore_class = check_ignore_not_a_class(
            check_ignore_class(ignore_class), num_classes
        )
        # Binary segmentation with one sigmoid channel is two classes.
        self._matrix_size = num_ids(num_classes)
        if class_names is not None:
            class_names = check_class_names(class_names)
            if len(class_names) != self._matrix_size:
                raise ValueError(
                    f"`class_names` needs one name per class, {self._matrix_size} "
                    f"for num_classes={num_classes}. "
                    f"Received: class_names={class_names}"
                )
            if len(set(class_names)) != len(class_names):
                raise ValueError(
                    "`class_names` must be distinct: the logs are keyed by name "
                    "(`iou/<name>`), so a repeated name hides a class. "
                    f"Received: class_names={class_names}"
                )
        threshold = check_threshold(threshold)
        check_choice("y_pred_format", y_pred_format, Y_PRED_FORMATS)

        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.class_names = class_names
        self.threshold = threshold
        self.y_pred_format = y_pred_format

        size = self._matrix_size
        # One histogram: size * size cells, then the bins of _OUT_OF_RANGE,
        # _IGNORED and _BAD_WEIGHT (offsets from size * size).
        self._length = size * size + 3
        self.counts_low = self.add_variable(
            (self._length,), "zeros", dtype="int32", name="counts_low"
        )
        self.counts_high = self.add_variable(
            (self._length,), "zeros", dtype="int32", name="counts_high"
        )

    # --- state ------------------------------------------------------------

    def update_state(self, y_true, y_pred, sample_weight=None):
        bins = self._bins(y_true, y_pred, sample_weight)
        self._add(count_bins(bins, self._length))

    def _bins(self, y_true, y_pred, sample_weight=None):
        """The histogram bin of every pixel, `y_pred`'s shape without the
        channels: `true * size + pred` for a counted pixel, else one of the
        bins after the `size * size` cells."""
        y_pred = ops.convert_to_tensor(y_pred)
        pred = predicted_ids(
            y_pred,
            self.num_classes,
            self.threshold,
            self.y_pred_format,
            name=type(self).__name__,
        )
        size = self._matrix_size
        true, valid, bad = target_ids(
            y_true, pred.shape, size, self.ignore_class, tuple(y_pred.shape)
        )
        raise_on_bad_ids(y_true, bad, size, self.ignore_class)
        # Ignored: no class and not bad. Bad ids and predictions with no
        # class (NaN, logits read with a probability threshold) count as out
        # of range, in traced code where they cannot raise.
        in_range = valid & (pred >= 0) & (pred < size)
        bins = ops.where(in_range, true * size + pred, size * size + _OUT_OF_RANGE)
        bins = ops.where(~valid & ~bad, size * size + _IGNORED, bins)
        if sample_weight is not None:
            weight = check_sample_weight(sample_weight, true)
            bad = (weight != 0) & (weight != 1)
            _raise_on_weights(concrete_value(ops.any(bad)), weight)
            bins = ops.where(weight == 0, size * size + _IGNORED, bins)
            bins = ops.where(bad, size * size + _BAD_WEIGHT, bins)
        return bins

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
        """The `(n, n)` float32 matrix of counts; rows true, columns predicted.

        All NaN once a pixel had a sample weight other than 0 or 1 (traced
        code; eagerly that is a `ValueError`): there is no honest count.
        """
        size = self._matrix_size
        totals = self._totals()
        matrix = ops.reshape(totals[: size * size], (size, size))
        bad_weights = totals[size * size + _BAD_WEIGHT] > 0
        return ops.where(bad_weights, float("nan"), matrix)

    @property
    def out_of_range_count(self):
        """Pixels not counted for want of a class (int): an id outside
        `[0, num_classes)` that is not `ignore_class`, a float id that is not
        whole, a NaN prediction, or logits read with a probability threshold.
        """
        totals = ops.convert_to_numpy(self._totals())
        return int(totals[self._matrix_size**2 + _OUT_OF_RANGE])

    def _warn_out_of_range(self):
        totals = concrete_value(self._totals())
        if totals is None:  # Inside a traced function: no value to report.
            return
        size = self._matrix_size
        count = int(totals[size * size + _OUT_OF_RANGE])
        if count:
            logits = ""
            if self.num_classes == 1 and 0 < self.threshold < 1:
                # The likeliest cause with one channel: a logits model.
                logits = (
                    ", or a one-channel prediction outside [0, 1] (a logit) "
                    f"read with `threshold`={self.threshold}: for logits pass "
                    "threshold=0"
                )
            warnings.warn(
                f"{self.name}: {count} pixels had no class: a class id outside "
                f"[0, {size}) that is not `ignore_class`={self.ignore_class}, a "
                f"fractional id, or a NaN prediction{logits}; they were not "
                "counted. Check `num_classes` and the model's outputs, or set "
                "`ignore_class` to the id of unlabelled pixels.",
                stacklevel=3,
            )
        count = int(totals[size * size + _BAD_WEIGHT])
        if count:
            warnings.warn(
                f"{self.name}: {count} pixels had a `sample_weight` other than 0 "
                "or 1, so the result is NaN: the metric counts pixels, it cannot "
                "weigh them. Pass 0/1 weights (a mask), or put the metric in "
                "`metrics=`, not `weighted_metrics=`.",
                stacklevel=3,
            )

    def reset_state(self):
        # ops.zeros, not ops.zeros_like: JAX cannot read a Keras variable's dtype.
        self.counts_low.assign(ops.zeros((self._length,), "int32"))
        self.counts_high.assign(ops.zeros((self._length,), "int32"))

    def _per_class_logs(self, values, default_name, prefix):
        """`{prefix}/{class}` for each class, the prefix the metric's own
        name when it has another than its default: two renamed metrics (say
        one per output of a model, which Keras merges into one dict of
        logs) no longer write over each other's classes."""
        prefix = prefix if self.name == default_name else self.name
        names = self.class_names or [str(i) for i in range(self._matrix_size)]
        return {f"{prefix}/{name}": values[i] for i, name in enumerate(names)}

    @classmethod
    def from_config(cls, config):
        # 0.1.0 took any `dtype` (float16 rounded the counts above 2,048); a
        # file saved with one loads, computing float32 as every metric now does.
        try:
            _check_result_dtype(config.get("dtype"))
        except ValueError:
            warnings.warn(
                f"This `{cls.__name__}` was saved with dtype={config['dtype']!r}; "
                "it loads computing float32, as seglayers metrics now do.",
                stacklevel=2,
            )
            config = {**config, "dtype": "float32"}
        return super().from_config(config)

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


def _raise_on_weights(any_bad, weight):
    if not any_bad:  # False, or None in traced code.
        return
    values = ops.convert_to_numpy(weight)
    bad = values[(values != 0) & (values != 1)]
    raise ValueError(
        "`sample_weight` must be 0 (leave the pixel out) or 1 (count it): the "
        "metric counts pixels exactly and cannot weigh them. Weigh classes in "
        "the loss (`class_weights`), or pass 0/1 masks. Received: "
        f"sample_weight with values such as {sorted(set(bad.tolist()))[:5]}"
    )


def _check_result_dtype(dtype):
    """Results are float32 ratios of exact counts, under any policy."""
    try:
        standard = None if dtype is None else keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError, AttributeError):
        standard = dtype
    if standard not in (None, "float32"):
        raise ValueError(
            "seglayers metrics compute and return float32 (ratios of exact "
            "integer counts; float16 would round them), whatever the dtype "
            "policy. Leave `dtype` unset, or cast the result. "
            f"Received: dtype={dtype!r}"
        )
