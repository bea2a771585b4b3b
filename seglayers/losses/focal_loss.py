from keras import ops

from seglayers._api import register
from seglayers._validation import check_non_negative
from seglayers.losses._functional import weighted_mean
from seglayers.losses.segmentation_loss import SegmentationLoss

# The least `1 - p_true` raised to `gamma` (see `batch_loss`).
_TINY = 1e-12


@register
class FocalLoss(SegmentationLoss):
    """Focal loss (Lin et al., 2017) per pixel, for imbalanced segmentation.

    `-(1 - p_t)**gamma * log(p_t)`, where `p_t` is the predicted probability
    of the true class, averaged over the labelled pixels (weighted by
    `class_weights`, the paper's alpha, if given). `gamma=0` is cross-entropy.
    Targets may be class ids or one-hot; see `SegmentationLoss`.

    The first arguments are those of every seglayers loss, so the losses
    are interchangeable (`FocalLoss(True)` means `from_logits=True`, as in
    `DiceLoss(True)`); pass `gamma` by name. Up to seglayers 0.1 `gamma` came
    first; a number in first place is refused with a message.

    Args:
        from_logits: bool, whether `y_pred` holds logits. Defaults to `False`.
        ignore_class: int or `None`, the id of pixels that carry no loss.
        class_weights: optional list of per-class weights.
        gamma: float >= 0, the focusing parameter. Defaults to 2.
        name: str. Defaults to `"focal_loss"`.
        reduction: only `"sum_over_batch_size"` (the default): the loss is
            one value per batch, so other reductions are refused.
        dtype: a float dtype or policy, as in `keras.losses.Loss`.

    Example:

    >>> y_true = np.array([[0, 1]])
    >>> y_pred = np.array([[[0.9, 0.1], [0.5, 0.5]]])
    >>> round(float(FocalLoss(gamma=0.0)(y_true, y_pred)), 4)  # cross-entropy
    0.3993
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        class_weights=None,
        gamma=2.0,
        name="focal_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        if isinstance(from_logits, (int, float)) and not isinstance(from_logits, bool):
            raise TypeError(
                "`FocalLoss`'s first argument is `from_logits`, as in every "
                "seglayers loss; pass the focusing parameter by name, e.g. "
                f"FocalLoss(gamma={from_logits!r}). "
                f"Received: from_logits={from_logits!r}"
            )
        super().__init__(
            from_logits=from_logits,
            ignore_class=ignore_class,
            class_weights=class_weights,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )
        # 0 is cross-entropy.
        self.gamma = check_non_negative("gamma", gamma, example="2.0")

    def batch_loss(self, y_true, y_pred):
        target, log_probs, probs, valid = self.prepare(y_true, y_pred)
        log_p_true = ops.sum(target * log_probs, axis=-1)
        p_true = ops.sum(target * probs, axis=-1)
        # At least a tiny number: at 1 - p_true == 0 (a sure pixel, common
        # in float32 once a logit leads by 17), the gradient of x**gamma is
        # inf for gamma < 1 (0 * inf for gamma 0) and made every gradient NaN.
        focal = -ops.power(ops.maximum(1.0 - p_true, _TINY), self.gamma) * log_p_true
        return weighted_mean(focal, self.pixel_weights(target, valid))

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
        return config
