"""Loss formulas shared by the seglayers losses, in float32."""

from keras import ops

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


def weighted_mean(values, weights):
    """`Σ values·weights / Σ weights` in float32; 0 when all weights are 0,
    NaN when a weight is NaN (see `SegmentationLoss.prepare`)."""
    total = ops.sum(weights)
    mean = ops.sum(values * weights) / ops.maximum(total, 1e-7)
    return ops.where(ops.isnan(total), float("nan"), mean)
