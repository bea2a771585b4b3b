from keras import ops

from seglayers._api import register
from seglayers._validation import check_bool
from seglayers.metrics._counting import count_bins, nan_mean, safe_divide
from seglayers.metrics._per_sample import (
    check_has_batch_axis,
    sample_class_dice,
    sums_over_samples,
)
from seglayers.metrics.confusion_matrix import ConfusionMatrixMetric


@register
class MeanDice(ConfusionMatrixMetric):
    """Mean Dice coefficient (F1 score) over classes, for segmentation.

    `Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)` per class from one streaming
    confusion matrix, averaged over the classes present in the truth or the
    prediction (absent classes are left out). Inputs are read as in
    `MeanIoU`; with `class_names` the logs also hold `dice/<name>` (or
    `<metric name>/<name>` for a metric given another `name`).

    With `per_sample=True`, Dice per sample instead, what medical imaging
    reports (MONAI's `DiceMetric`): each image or volume gets its own Dice
    per class and their mean over the classes present in its truth or its
    prediction (a class absent from both is left out of that sample's mean,
    as it is of the global one; a class predicted but absent from the truth
    scores 0, where MONAI's `ignore_empty=True` leaves it out); the result
    is the mean over the samples seen (a sample whose pixels are all
    ignored is left out). `dice/<name>` is then the class's mean over the
    samples where it is present. The global matrix is the default: every
    pixel weighs the same, as in `MeanIoU` and mmsegmentation, and it is the
    one exact count; per sample, a small structure in one volume weighs as
    much as a large one in another.

    Args:
        num_classes: int, the number of classes (1: one sigmoid channel).
        ignore_class: int or `None`, the id of unlabelled pixels.
        class_names: optional list of names for per-class log entries.
        threshold: float, the cut-off for one sigmoid channel.
            Defaults to 0.5.
        y_pred_format: `"auto"`, `"scores"` or `"ids"`. Defaults to `"auto"`.
        per_sample: bool, whether to average each sample's Dice (the first
            axis of `y_true` and `y_pred` being the batch) instead of
            computing it from the confusion matrix of all pixels. Defaults
            to `False`.
        name: str. Defaults to `"mean_dice"`.
        dtype: `None` or `"float32"`: results are always float32.

    Example:

    >>> metric = MeanDice(num_classes=2)
    >>> metric.update_state(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    >>> round(float(metric.result()), 4)  # (2/3 + 4/5) / 2
    0.7333
    >>> per_volume = MeanDice(num_classes=2, per_sample=True)
    >>> y_true = np.zeros((2, 4, 4, 4), "int32")
    >>> y_true[0, :2] = 1  # a large structure in the first volume
    >>> y_true[1, 0, 0, 0] = 1  # one voxel in the second, missed
    >>> y_pred = np.zeros((2, 4, 4, 4), "int32")
    >>> y_pred[0, :2] = 1
    >>> per_volume.update_state(y_true, y_pred)
    >>> round(float(per_volume.result()), 4)  # (1 + (126/127 + 0) / 2) / 2
    0.748
    >>> global_dice = MeanDice(num_classes=2)
    >>> global_dice.update_state(y_true, y_pred)
    >>> round(float(global_dice.result()), 4)  # (190/191 + 64/65) / 2
    0.9897
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_names=None,
        threshold=0.5,
        y_pred_format="auto",
        per_sample=False,
        name="mean_dice",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            class_names=class_names,
            threshold=threshold,
            y_pred_format=y_pred_format,
            name=name or "mean_dice",  # not a numbered mean_dice_1
            dtype=dtype,
        )
        self.per_sample = check_bool("per_sample", per_sample)
        if per_sample:
            # Float32 sums of Dice values, summed across replicas as counts.
            size = self._matrix_size
            self.class_dice_sum = self._zeros((size,), "class_dice_sum")
            self.class_samples = self._zeros((size,), "class_samples")
            self.sample_dice_sum = self._zeros((), "sample_dice_sum")
            self.samples = self._zeros((), "samples")

    def _zeros(self, shape, name):
        return self.add_variable(shape, "zeros", dtype="float32", name=name)

    def _sample_state(self):
        return (
            self.class_dice_sum,
            self.class_samples,
            self.sample_dice_sum,
            self.samples,
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        bins = self._bins(y_true, y_pred, sample_weight)
        if self.per_sample:
            check_has_batch_axis(bins, type(self).__name__)
            dice = sample_class_dice(bins, self._matrix_size)
            for variable, value in zip(self._sample_state(), sums_over_samples(dice)):
                variable.assign(variable + value)
        # The global counts too: out-of-range pixels and bad sample weights
        # are reported from them in either mode.
        self._add(count_bins(bins, self._length))

    def reset_state(self):
        super().reset_state()
        if self.per_sample:
            for variable in self._sample_state():
                variable.assign(ops.zeros(variable.shape, "float32"))

    def result(self):
        self._warn_out_of_range()
        matrix = self.confusion_matrix()
        if self.per_sample:
            # All NaN after sample weights other than 0 and 1 (traced code).
            bad_weights = ops.any(ops.isnan(matrix))
            dice = safe_divide(self.class_dice_sum, self.class_samples)
            dice = ops.where(bad_weights, float("nan"), dice)
            mean = safe_divide(self.sample_dice_sum, self.samples)
            mean = ops.where(bad_weights, float("nan"), mean)
        else:
            true_positives = ops.diagonal(matrix)
            total = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1)
            dice = safe_divide(2.0 * true_positives, total)
            mean = nan_mean(dice)
        if self.class_names is None:
            return mean
        return {self.name: mean, **self._per_class_logs(dice, "mean_dice", "dice")}

    def get_config(self):
        config = super().get_config()
        config["per_sample"] = self.per_sample
        return config
