"""What the segmentation losses share: reading targets and predictions.

Everything is computed in float32, whatever the model's policy, so float16
outputs and 512×512 sums neither overflow nor lose the small terms.
"""

import keras
from keras import ops

from seglayers._validation import check_bool, check_ignore_class


def check_class_weights(class_weights):
    if class_weights is None:
        return None
    if not isinstance(class_weights, (list, tuple)) or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
        for w in class_weights
    ):
        raise ValueError(
            "`class_weights` must be a list of non-negative numbers, one per "
            f"class, e.g. [0.5, 1.0, 2.0]. Received: class_weights={class_weights!r}"
        )
    return [float(w) for w in class_weights]


class SegmentationLoss(keras.losses.Loss):
    """Base class: turns `(y_true, y_pred)` into aligned float32 tensors.

    `y_pred` holds `C` channels of logits (`from_logits=True`) or
    probabilities; one channel means binary segmentation with a sigmoid, read
    as two classes (background, foreground). `y_true` holds class ids
    `(..., H, W)` / `(..., H, W, 1)`, or is one-hot `(..., H, W, C)`. Pixels
    whose id is `ignore_class`, whose id lies outside `[0, C)`, or whose
    one-hot row is all zeros (as `OneHotMask` writes for ignored pixels)
    carry no loss.

    The loss is one value for the whole batch (Dice is a batch statistic),
    so a `sample_weight` only scales it by its mean; weigh pixels with
    `class_weights` and leave them out with `ignore_class`.
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
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_bool("from_logits", from_logits)
        check_ignore_class(ignore_class)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.class_weights = check_class_weights(class_weights)

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
        `valid` is `(..., H, W)`, 1 where the pixel carries a loss.
        """
        y_pred = ops.cast(y_pred, "float32")
        channels = y_pred.shape[-1]
        if channels is None:
            raise ValueError(
                f"`{type(self).__name__}` needs the number of channels of "
                f"`y_pred`. Received: y_pred shape {tuple(y_pred.shape)}"
            )
        log_probs = _log_probabilities(y_pred, self.from_logits)
        classes = log_probs.shape[-1]
        target, valid = self._target(y_true, y_pred, classes)
        if self.class_weights is not None and len(self.class_weights) != classes:
            raise ValueError(
                f"`class_weights` has {len(self.class_weights)} values but the "
                f"predictions have {classes} classes. Give one weight per class."
                f" Received: class_weights={self.class_weights}"
            )
        return target, log_probs, ops.exp(log_probs), valid

    def _target(self, y_true, y_pred, classes):
        y_true = ops.convert_to_tensor(y_true)
        rank, pred_rank = len(y_true.shape), len(y_pred.shape)
        one_hot = (
            rank == pred_rank
            and y_true.shape[-1] == y_pred.shape[-1]
            and y_pred.shape[-1] > 1
        )
        if one_hot:
            target = ops.cast(y_true, "float32")
            valid = ops.cast(ops.sum(target, axis=-1) > 0, "float32")
        else:
            if rank == pred_rank and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            elif rank != pred_rank - 1:
                raise _mismatch(self, y_true, y_pred)
            ids = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
            valid = (ids >= 0) & (ids < classes)
            if self.ignore_class is not None:
                valid = valid & (ids != self.ignore_class)
            target = ops.one_hot(ops.where(valid, ids, 0), classes, dtype="float32")
            valid = ops.cast(valid, "float32")
        _check_spatial(self, target, y_pred, y_true)
        return target * valid[..., None], valid

    def pixel_weights(self, target, valid):
        """`valid`, times the class weight of each pixel's true class."""
        if self.class_weights is None:
            return valid
        weights = ops.convert_to_tensor(self.class_weights, "float32")
        return valid * ops.sum(target * weights, axis=-1)

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


def _mismatch(loss, y_true, y_pred):
    return ValueError(
        f"`{type(loss).__name__}` cannot match `y_true` to `y_pred`: expected "
        f"class ids {tuple(y_pred.shape[:-1])} or "
        f"{tuple(y_pred.shape[:-1]) + (1,)}, or one-hot {tuple(y_pred.shape)}. "
        f"Received: y_true shape {tuple(y_true.shape)}, y_pred shape "
        f"{tuple(y_pred.shape)}."
    )


def _check_spatial(loss, target, y_pred, y_true):
    for a, b in zip(target.shape[:-1], y_pred.shape[:-1]):
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"`{type(loss).__name__}`: `y_true` and `y_pred` cover different "
                f"pixels. Received: y_true shape {tuple(y_true.shape)}, y_pred "
                f"shape {tuple(y_pred.shape)}. Resize the masks to the model's "
                "output size (nearest neighbour)."
            )
