from keras import ops

from seglayers._api import register
from seglayers._validation import check_non_negative
from seglayers.losses._functional import dice_loss, weighted_mean
from seglayers.losses.segmentation_loss import SegmentationLoss


@register
class DiceCrossEntropyLoss(SegmentationLoss):
    """`dice_weight × Dice + cross_entropy_weight × cross-entropy`.

    The usual segmentation loss (nnU-Net's default): cross-entropy gives
    smooth per-pixel gradients, Dice counters class imbalance. The Dice term
    is `DiceLoss`'s; the cross-entropy is averaged over the labelled pixels
    (weighted by `class_weights` if given). Reads the targets once for both.

    Args:
        from_logits: bool, whether `y_pred` holds logits. Defaults to `False`.
        ignore_class: int or `None`, the id of pixels that carry no loss.
        class_weights: optional list of per-class weights, used by both terms.
        dice_weight: float, the weight of the Dice term. Defaults to 1.
        cross_entropy_weight: float, the weight of the cross-entropy term.
            Defaults to 1.
        name: str. Defaults to `"dice_cross_entropy_loss"`.
        reduction: only `"sum_over_batch_size"` (the default): the loss is
            one value per batch, so other reductions are refused.
        dtype: a float dtype or policy, as in `keras.losses.Loss`.

    Example:

    >>> loss = DiceCrossEntropyLoss(ignore_class=255)
    >>> y_true = np.array([[0, 1, 1, 255]])
    >>> y_pred = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]])
    >>> round(float(loss(y_true, y_pred)), 4)  # 0.1714 + ln(2) / 3
    0.4025
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        class_weights=None,
        dice_weight=1.0,
        cross_entropy_weight=1.0,
        name="dice_cross_entropy_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            from_logits=from_logits,
            ignore_class=ignore_class,
            class_weights=class_weights,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )
        self.dice_weight = check_non_negative("dice_weight", dice_weight)
        self.cross_entropy_weight = check_non_negative(
            "cross_entropy_weight", cross_entropy_weight
        )

    def batch_loss(self, y_true, y_pred):
        target, log_probs, probs, valid = self.prepare(y_true, y_pred)
        binary = y_pred.shape[-1] == 1
        dice = dice_loss(target, probs, valid, self.class_weights, binary=binary)
        cross_entropy = weighted_mean(
            -ops.sum(target * log_probs, axis=-1), self.pixel_weights(target, valid)
        )
        return self.dice_weight * dice + self.cross_entropy_weight * cross_entropy

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dice_weight": self.dice_weight,
                "cross_entropy_weight": self.cross_entropy_weight,
            }
        )
        return config
