from keras import ops

from seglayers._api import register
from seglayers.metrics._counting import nan_mean, safe_divide
from seglayers.metrics.confusion_matrix import ConfusionMatrixMetric


@register
class MeanDice(ConfusionMatrixMetric):
    """Mean Dice coefficient (F1 score) over classes, for segmentation.

    `Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)` per class from one streaming
    confusion matrix, averaged over the classes present in the truth or the
    prediction (absent classes are left out). Inputs are read as in
    `MeanIoU`; with `class_names` the logs also hold `dice/<name>`.

    Args:
        num_classes: int, the number of classes (1: one sigmoid channel).
        ignore_class: int or `None`, the id of unlabelled pixels.
        class_names: optional list of names for per-class log entries.
        threshold: float, the cut-off for one sigmoid channel.
            Defaults to 0.5.
        y_pred_format: `"auto"`, `"scores"` or `"ids"`. Defaults to `"auto"`.
        name: str. Defaults to `"mean_dice"`.
        dtype: `None` or `"float32"`: results are always float32.

    Example:

    >>> metric = MeanDice(num_classes=2)
    >>> metric.update_state(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    >>> round(float(metric.result()), 4)  # (2/3 + 4/5) / 2
    0.7333
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_names=None,
        threshold=0.5,
        y_pred_format="auto",
        name="mean_dice",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            class_names=class_names,
            threshold=threshold,
            y_pred_format=y_pred_format,
            name=name,
            dtype=dtype,
        )

    def result(self):
        self._warn_out_of_range()
        matrix = self.confusion_matrix()
        true_positives = ops.diagonal(matrix)
        total = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1)
        dice = safe_divide(2.0 * true_positives, total)
        mean = nan_mean(dice)
        if self.class_names is None:
            return mean
        return {self.name: mean, **self._per_class_logs("dice", dice)}
