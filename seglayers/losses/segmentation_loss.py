"""What the segmentation losses share: reading targets and predictions.

Everything is computed in float32, whatever the model's policy, so float16
outputs and 512×512 sums neither overflow nor lose the small terms.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from seglayers._masks import mask_tensor, num_ids, raise_on_bad_ids
from seglayers._targets import target_one_hot
from seglayers._validation import (
    check_bool,
    check_class_weights,
    check_ignore_class,
    check_ignore_not_a_class,
    check_sample_weight,
    concrete_value,
)

# The one `reduction` a batch statistic can honour.
_BATCH_REDUCTION = "sum_over_batch_size"
# Reductions that earlier releases accepted and silently gave the batch
# value for: a saved config holding one loads as the default, which it was.
_FORMERLY_IGNORED = ("sum", "mean", "mean_with_sample_weight")

# Probabilities may exceed [0, 1] by rounding (float16 softmax), logits by far.
_PROBABILITY_SLACK = 1e-3
# A half-precision softmax's rows sum to 1 only within its rounding (0.002
# off in float16, 0.008 in bfloat16, measured): four of the type's epsilon.
# With 1e-3, a mixed-precision model's softmax given with from_logits=True
# went unnoticed, and the loss was silently wrong.
_HALF_SLACK = {"float16": 4 * 2.0**-10, "bfloat16": 4 * 2.0**-7}


def _slack(y_pred):
    """How far rounding may take `y_pred`'s probabilities, by its dtype
    (read before Keras casts it to the loss's float32)."""
    dtype = getattr(y_pred, "dtype", None)
    if dtype is None:
        return _PROBABILITY_SLACK
    return _HALF_SLACK.get(keras.backend.standardize_dtype(dtype), _PROBABILITY_SLACK)


class SegmentationLoss(keras.losses.Loss):
    """Base class: turns `(y_true, y_pred)` into aligned float32 tensors.

    `y_pred` holds `C` channels of logits (`from_logits=True`) or
    probabilities; one channel means binary segmentation with a sigmoid, read
    as two classes (background, foreground). `y_true` holds class ids
    `(..., H, W)` / `(..., H, W, 1)`, or is one-hot `(..., H, W, C)` (two
    channels for one sigmoid channel, as `MeanIoU(1)` reads it). Pixels
    whose id is `ignore_class` or whose one-hot row is all zeros (as
    `OneHotMask` writes for ignored pixels) carry no loss.

    The loss is one value for the whole batch (Dice is a batch statistic),
    so `reduction` must leave it whole: only the default
    `"sum_over_batch_size"` is accepted (`"none"`, `"sum"`, `"mean"` and
    `"mean_with_sample_weight"` are refused, never ignored). A
    `sample_weight` of one weight per sample `(batch,)` or per pixel
    `(batch, H, W)` / `(batch, H, W, 1)` weighs the pixels inside the loss
    (a sample of weight 0 adds nothing, one of weight 2 counts twice).

    Inputs with no honest loss raise a `ValueError` when their values are
    at hand (eager calls) and give NaN in traced code (`fit`), where values
    are unknown until run, so `keras.callbacks.TerminateOnNaN` stops the
    run: a class id in `y_true` outside `[0, C)` that is not
    `ignore_class`, or a fractional id; `y_pred` outside [0, 1] with
    `from_logits=False` (logits); `y_pred` whose every pixel is a
    probability distribution with `from_logits=True` (softmax outputs, C >
    1); a `sample_weight` below 0, NaN or infinite. A NaN in `y_pred` gives
    NaN. An empty batch gives 0. An
    `ignore_class` that is also a class id (`0 <= ignore_class < C`) raises
    at the first call.
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        class_weights=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        check_batch_reduction(type(self).__name__, reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if "float" not in self.dtype:
            # Keras casts the probabilities to it: int32 made a Dice loss 0.
            raise ValueError(
                f"`dtype` of `{type(self).__name__}` must be a float type, "
                "such as 'float32' (the default) or 'mixed_bfloat16', since a "
                "loss is a fraction. "
                f"Received: dtype={dtype!r}"
            )
        from_logits = check_bool("from_logits", from_logits)
        ignore_class = check_ignore_class(ignore_class)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.class_weights = check_class_weights(class_weights)
        self._sample_weight = None  # Set by __call__ for `prepare`.
        self._slack = _PROBABILITY_SLACK  # Likewise.

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras multiplies the values `call` returns by `sample_weight`; a
        # batch statistic cannot be weighed after the fact, so the weights
        # go to the pixels in `prepare` instead.
        self._sample_weight = sample_weight
        self._slack = _slack(y_pred)
        # Before Keras casts `y_true` to the loss's dtype (complex values
        # would lose their imaginary part with only a warning).
        y_true = mask_tensor(y_true)
        try:
            return super().__call__(y_true, y_pred)
        finally:
            self._sample_weight = None
            self._slack = _PROBABILITY_SLACK

    def call(self, y_true, y_pred):
        # Keras's `reduce_values` passes a 0-d loss through without
        # `scale_loss_for_distribution`, yet the trainer unscales it, so under
        # a 2-replica tf.distribute strategy a scalar loss is doubled (in the
        # logs and the gradients). A shape-(1,) value goes through the same
        # scaling as per-sample losses. Tested in tests/metrics/distributed_test.py.
        return ops.reshape(self.batch_loss(y_true, y_pred), (1,))

    def batch_loss(self, y_true, y_pred):
        """The loss of the whole batch, a float32 scalar. For subclasses."""
        raise NotImplementedError

    def prepare(self, y_true, y_pred):
        """Returns `(target, log_probs, probs, valid)`, all float32.

        `target`, `log_probs` and `probs` are `(..., H, W, C)` (C >= 2);
        `valid` is `(..., H, W)`: the weight of each pixel (0 where it carries
        no loss, `sample_weight` elsewhere), and NaN everywhere when the
        inputs have no honest loss (see the class docstring), so that every
        loss built on it is NaN.
        """
        slack = max(self._slack, _slack(y_pred))  # `prepare` called directly too
        y_pred = ops.cast(y_pred, "float32")
        channels = y_pred.shape[-1]
        if channels is None:
            raise ValueError(
                f"`{type(self).__name__}` needs the number of channels of "
                f"`y_pred`. Received: y_pred shape {tuple(y_pred.shape)}"
            )
        classes = num_ids(channels)
        check_ignore_not_a_class(self.ignore_class, channels)
        if self.class_weights is not None and len(self.class_weights) != classes:
            raise ValueError(
                f"`class_weights` has {len(self.class_weights)} values but the "
                f"predictions have {classes} classes. Give one weight per class."
                f" Received: class_weights={self.class_weights}"
            )
        log_probs = _log_probabilities(y_pred, self.from_logits)
        target, valid, bad = target_one_hot(
            y_true, y_pred.shape[:-1], classes, self.ignore_class, tuple(y_pred.shape)
        )
        raise_on_bad_ids(y_true, bad, classes, self.ignore_class)
        valid = ops.cast(valid, "float32")
        wrong = self._wrong_scores(y_pred, slack)
        invalid = ops.any(bad) | wrong | ops.any(ops.isnan(y_pred))
        if self._sample_weight is not None:
            weights = check_sample_weight(self._sample_weight, valid)
            invalid = invalid | self._bad_weights(self._sample_weight)
            valid = valid * ops.cast(weights, "float32")
        valid = ops.where(invalid, float("nan"), valid)
        return target, log_probs, ops.exp(log_probs), valid

    def _bad_weights(self, weights):
        """True if a weight is negative or not finite: the weighted sums of a
        Dice loss then make no ratio (-1 gave a DiceCrossEntropyLoss of
        -1.4e7). Checked before the broadcast to every pixel, in float32 as
        the loss sums them (1e39 is infinite there), named as given."""
        weights = ops.convert_to_tensor(weights)
        as_float = ops.cast(weights, "float32")
        bad = (as_float < 0) | ~ops.isfinite(as_float)
        values = concrete_value(bad)
        if values is not None and values.any():
            examples = np.unique(concrete_value(weights)[values])[:3].tolist()
            raise ValueError(
                f"`sample_weight` of `{type(self).__name__}` must be finite "
                "and >= 0 (0 leaves a pixel out). Received: sample_weight with "
                f"values such as {examples}"
            )
        return ops.any(bad)

    def _wrong_scores(self, y_pred, slack):
        """True if `y_pred` cannot be what `from_logits` says (see above),
        within `slack` of rounding."""
        if not self.from_logits:
            outside = (y_pred < -slack) | (y_pred > 1 + slack)
            wrong = ops.any(outside)
            if concrete_value(wrong):
                raise ValueError(
                    f"`{type(self).__name__}`: `y_pred` has values outside [0, 1] "
                    f"(from {_extreme(y_pred, ops.min)} to "
                    f"{_extreme(y_pred, ops.max)}): these are logits, not "
                    "probabilities. Pass from_logits=True, or end the model with "
                    "a softmax (sigmoid for one channel). Received: "
                    "from_logits=False"
                )
            return wrong
        if y_pred.shape[-1] == 1:
            return ops.convert_to_tensor(False)  # A sigmoid logit may be in [0, 1].
        in_unit = (y_pred >= 0) & (y_pred <= 1)
        sums_to_one = ops.abs(ops.sum(y_pred, axis=-1) - 1) <= slack
        wrong = ops.all(in_unit) & ops.all(sums_to_one) & (ops.size(sums_to_one) > 0)
        if concrete_value(wrong):
            raise ValueError(
                f"`{type(self).__name__}`: every pixel of `y_pred` is a "
                "probability distribution (values in [0, 1] summing to 1): these "
                "are softmax outputs, not logits. Pass from_logits=False, or "
                "remove the model's final softmax. Received: from_logits=True"
            )
        return wrong

    def pixel_weights(self, target, valid):
        """`valid`, times the class weight of each pixel's true class."""
        if self.class_weights is None:
            return valid
        weights = ops.convert_to_tensor(self.class_weights, "float32")
        return valid * ops.sum(target * weights, axis=-1)

    @classmethod
    def from_config(cls, config):
        if config.get("reduction") in _FORMERLY_IGNORED:
            warnings.warn(
                f"This `{cls.__name__}` was saved with "
                f"reduction={config['reduction']!r}, which gave the batch value "
                f"all along; it loads with reduction={_BATCH_REDUCTION!r}, the "
                "same loss.",
                stacklevel=2,
            )
            config = {**config, "reduction": _BATCH_REDUCTION}
        # An infinite smooth, gamma or term weight is refused now (it gave NaN,
        # inf or 0 losses); a file saved with one still loads, as it was.
        infinite = {k: v for k, v in config.items() if v == math.inf}
        if infinite:
            warnings.warn(
                f"This `{cls.__name__}` was saved with {infinite}, which gives "
                "NaN, infinite or zero losses; new losses refuse it.",
                stacklevel=2,
            )
        loss = super().from_config({**config, **dict.fromkeys(infinite, 1.0)})
        for name, value in infinite.items():
            setattr(loss, name, value)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "ignore_class": self.ignore_class,
                "class_weights": self.class_weights,
                # keras.losses.Loss leaves its `dtype` argument out.
                "dtype": self.dtype,
            }
        )
        return config


def check_batch_reduction(loss_name, reduction):
    """Raises unless `reduction` is the default: any other Keras reduction
    would be silently the same batch value."""
    if isinstance(reduction, str) and reduction == _BATCH_REDUCTION:
        return
    raise ValueError(
        f"`{loss_name}` gives one value for the whole batch (Dice is a batch "
        "statistic, and ignored pixels are left out of the batch mean), so it "
        "cannot give one value per sample ('none'), nor sum or average "
        "per-sample values ('sum', 'mean', 'mean_with_sample_weight'). Leave "
        f"`reduction` at its default, reduction={_BATCH_REDUCTION!r}, and weigh "
        f"samples with `sample_weight`. Received: reduction={reduction!r}"
    )


def _log_probabilities(y_pred, from_logits):
    if y_pred.shape[-1] == 1:
        # One sigmoid channel: log p(background), log p(foreground).
        if from_logits:
            z = y_pred
        else:
            p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
            z = ops.log(p) - ops.log1p(-p)
        return ops.concatenate([-ops.softplus(z), -ops.softplus(-z)], axis=-1)
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    return ops.log(ops.clip(y_pred, 1e-7, 1.0))


def _extreme(values, reduce):
    return f"{float(ops.convert_to_numpy(reduce(values))):g}"
