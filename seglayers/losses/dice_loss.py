from keras import ops

from seglayers._api import register
from seglayers.losses.segmentation_loss import SegmentationLoss

_EPSILON = 1e-7


def dice_loss(target, probs, valid, class_weights=None, smooth=0.0, binary=False):
    """Batch soft-Dice loss: `1 - Dice` per class, averaged over the classes
    present in `target`, weighted by `class_weights`. 0 when none is present.

    With `binary=True` (two channels made from one sigmoid channel) only the
    foreground is scored, as is customary.
    """
    weights = valid[..., None]  # 0 for pixels without a loss, else their weight
    axes = tuple(range(len(target.shape) - 1))
    intersection = ops.sum(target * probs * weights, axis=axes)
    true_sum = ops.sum(target * weights, axis=axes)
    denominator = true_sum + ops.sum(probs * weights, axis=axes)
    dice = (2.0 * intersection + smooth) / ops.maximum(denominator + smooth, _EPSILON)
    present = ops.cast(true_sum > 0, "float32")
    class_mean = present
    if class_weights is not None:
        class_mean = class_mean * ops.convert_to_tensor(class_weights, "float32")
    if binary:
        class_mean = class_mean * ops.convert_to_tensor([0.0, 1.0])
    loss = ops.sum((1.0 - dice) * class_mean) / ops.maximum(
        ops.sum(class_mean), _EPSILON
    )
    # NaN weights mark inputs with no honest loss (SegmentationLoss.prepare);
    # XLA turns `NaN * (present > 0)` into 0, so say it explicitly.
    return ops.where(ops.isnan(ops.sum(valid)), float("nan"), loss)


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
        reduction: as in `keras.losses.Loss`.
        dtype: as in `keras.losses.Loss`.

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
        self.smooth = float(smooth)

    def batch_loss(self, y_true, y_pred):
        target, _, probs, valid = self.prepare(y_true, y_pred)
        binary = y_pred.shape[-1] == 1
        return dice_loss(target, probs, valid, self.class_weights, self.smooth, binary)

    def get_config(self):
        config = super().get_config()
        config["smooth"] = self.smooth
        return config
