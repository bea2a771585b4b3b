from seglayers._api import register
from seglayers._validation import check_non_negative
from seglayers.losses._functional import dice_loss
from seglayers.losses.segmentation_loss import SegmentationLoss


@register
class DiceLoss(SegmentationLoss):
    """Soft Dice loss for semantic segmentation (Milletari et al., 2016).

    `1 - 2 Σ p·t / (Σ p + Σ t)` per class over the whole batch ("batch
    Dice"), averaged over the classes present in the batch's masks, so a
    class that is absent neither helps nor hurts. An empty batch gives 0,
    never NaN. With one sigmoid channel only the foreground is scored.
    Targets may be class ids or one-hot; see `SegmentationLoss`.

    Args:
        from_logits: bool, whether `y_pred` holds logits. Defaults to `False`
            (probabilities, as `UNet`'s default softmax gives).
        ignore_class: int or `None`, the id of pixels that carry no loss.
        class_weights: optional list of per-class weights for the average.
        smooth: float, added to numerator and denominator. Defaults to 0.
        name: str. Defaults to `"dice_loss"`.
        reduction: only `"sum_over_batch_size"` (the default): the loss is
            one value per batch, so other reductions are refused.
        dtype: a float dtype or policy, as in `keras.losses.Loss`.

    Example:

    >>> loss = DiceLoss()
    >>> y_true = np.array([[0, 1, 1, 255]])
    >>> y_pred = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]])
    >>> round(float(DiceLoss(ignore_class=255)(y_true, y_pred)), 4)
    0.1714
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        class_weights=None,
        smooth=0.0,
        name="dice_loss",
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
        self.smooth = check_non_negative("smooth", smooth)

    def batch_loss(self, y_true, y_pred):
        target, _, probs, valid = self.prepare(y_true, y_pred)
        binary = y_pred.shape[-1] == 1
        return dice_loss(target, probs, valid, self.class_weights, self.smooth, binary)

    def get_config(self):
        config = super().get_config()
        config["smooth"] = self.smooth
        return config
