from keras import ops

from seglayers._api import register
from seglayers.metrics._counting import safe_divide
from seglayers.metrics.confusion_matrix import ConfusionMatrixMetric


@register
class PixelAccuracy(ConfusionMatrixMetric):
    """The fraction of labelled pixels whose predicted class is right.

    Pixels labelled `ignore_class` (or all-zero one-hot rows) are left out of
    both counts; inputs are read as in `MeanIoU`. NaN before any labelled
    pixel has been seen.

    Args:
        num_classes: int, the number of classes (1: one sigmoid channel).
        ignore_class: int or `None`, the id of unlabelled pixels.
        threshold: float, the cut-off for one sigmoid channel.
            Defaults to 0.5.
        y_pred_format: `"auto"`, `"scores"` or `"ids"`. Defaults to `"auto"`.
        name: str. Defaults to `"pixel_accuracy"`.
        dtype: `None` or `"float32"`: results are always float32.

    Example:

    >>> metric = PixelAccuracy(num_classes=3, ignore_class=255)
    >>> metric.update_state(np.array([0, 1, 2, 255]), np.array([0, 1, 1, 0]))
    >>> round(float(metric.result()), 4)
    0.6667
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        threshold=0.5,
        y_pred_format="auto",
        name="pixel_accuracy",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            threshold=threshold,
            y_pred_format=y_pred_format,
            name=name,
            dtype=dtype,
        )

    def result(self):
        self._warn_out_of_range()
        matrix = self.confusion_matrix()
        return safe_divide(ops.trace(matrix), ops.sum(matrix))

    def get_config(self):
        config = super().get_config()
        del config["class_names"]
        return config
