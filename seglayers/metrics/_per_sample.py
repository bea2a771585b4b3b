"""Dice of each sample (image or volume), for `MeanDice(per_sample=True)`.

Read from the histogram bins `ConfusionMatrixMetric._bins` gives every
pixel, so ignored pixels, zero sample weights, ids out of range and NaN
predictions are left out exactly as in the global confusion matrix.
Counted with one-hot sums over the pixels, not `count_bins`: the batch
size (the number of histograms) may be unknown when traced, and
`segment_sum` under XLA needs a static number of bins.
"""

from keras import ops

from seglayers.metrics._counting import safe_divide


def check_has_batch_axis(bins, name):
    """Raises unless the class ids have a batch axis before two or more
    spatial axes (a single image `(H, W)` would be read as H samples)."""
    if len(bins.shape) < 3:
        raise ValueError(
            f"`{name}` with per_sample=True needs a batch axis: `y_pred` of "
            "shape (batch, height, width, ...) or (batch, depth, height, "
            "width, ...); add one with `y[None]` for a single sample. "
            f"Received: y_pred with class ids of shape {tuple(bins.shape)}"
        )


def sample_class_dice(bins, size):
    """`(batch, size)` float32 Dice of each sample and class; NaN where the
    class is absent from both the sample's truth and its prediction."""
    cells = size * size
    counted = ops.cast(bins < cells, "float32")[..., None]
    # Any valid id for the pixels not counted; `counted` zeroes them.
    cell = ops.where(bins < cells, bins, 0)
    true = ops.one_hot(cell // size, size) * counted
    pred = ops.one_hot(cell % size, size) * counted
    spatial = tuple(range(1, len(bins.shape)))
    true_positives = ops.sum(true * pred, axis=spatial)
    total = ops.sum(true, axis=spatial) + ops.sum(pred, axis=spatial)
    return safe_divide(2.0 * true_positives, total)


def sums_over_samples(dice):
    """What `MeanDice(per_sample=True)` accumulates from `(batch, size)`
    Dice: per class the sum and the number of samples where it is present;
    the sum of each sample's mean over its present classes, and the number
    of samples with any (none only when every pixel was left out)."""
    present = ops.logical_not(ops.isnan(dice))
    values = ops.where(present, dice, 0.0)
    present = ops.cast(present, "float32")
    classes_present = ops.sum(present, axis=1)
    has_classes = classes_present > 0
    sample_mean = ops.sum(values, axis=1) / ops.maximum(classes_present, 1.0)
    return (
        ops.sum(values, axis=0),
        ops.sum(present, axis=0),
        ops.sum(ops.where(has_classes, sample_mean, 0.0)),
        ops.sum(ops.cast(has_classes, "float32")),
    )
