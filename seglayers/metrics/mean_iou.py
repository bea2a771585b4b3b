from seglayers._api import register
from seglayers.metrics._counting import nan_mean, per_class_iou
from seglayers.metrics.confusion_matrix import ConfusionMatrixMetric


@register
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection-over-union for semantic segmentation.

    `IoU_c = TP_c / (TP_c + FP_c + FN_c)` per class from one streaming
    confusion matrix, averaged over the classes that appear in the truth or
    the prediction: a class absent from both has no IoU and is left out of
    the mean (the convention of `keras.metrics.MeanIoU` and mmsegmentation).

    Unlike `keras.metrics.MeanIoU`, it takes what a model outputs: logits,
    probabilities, one-hot or class ids, against class-id or one-hot masks;
    see `ConfusionMatrixMetric` for the rules. Pixels labelled `ignore_class`
    count nowhere, and ids outside `[0, num_classes)` are never counted as a
    class: true ids out of range raise in eager calls, and in traced code
    (`fit`) are tallied in `out_of_range_count` (see `ConfusionMatrixMetric`).

    Args:
        num_classes: int, the number of classes. 1 means one sigmoid channel
            (binary: background and foreground, both averaged).
        ignore_class: int or `None`, the id of unlabelled pixels (e.g. 255).
        class_names: optional list of names, one per class; then the logs
            also hold `iou/<name>` for every class (NaN while absent), which
            `EarlyStopping` (with `mode="max"`) and TensorBoard can use;
            `<metric name>/<name>` for a metric given another `name`.
        threshold: float, the cut-off for one sigmoid channel. Defaults to
            0.5 (probabilities); use 0 for logits.
        y_pred_format: `"auto"`, `"scores"` or `"ids"`: how to read
            `y_pred`. Defaults to `"auto"`.
        name: str, the metric's name in logs. Defaults to `"mean_iou"`.
        dtype: `None` or `"float32"`: results are always float32.

    Example:

    >>> metric = MeanIoU(num_classes=3, ignore_class=255)
    >>> y_true = np.array([[0, 1], [2, 255]])
    >>> y_pred = np.array([[[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]],
    ...                    [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]])
    >>> metric.update_state(y_true, y_pred)
    >>> round(float(metric.result()), 4)  # (1 + 1/2 + 0) / 3
    0.5

    With `model.compile(metrics=[MeanIoU(21, ignore_class=255)])`.
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_names=None,
        threshold=0.5,
        y_pred_format="auto",
        name="mean_iou",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            class_names=class_names,
            threshold=threshold,
            y_pred_format=y_pred_format,
            name=name or "mean_iou",  # not Keras's numbered mean_io_u_1
            dtype=dtype,
        )

    def result(self):
        self._warn_out_of_range()
        iou = per_class_iou(self.confusion_matrix())
        mean = nan_mean(iou)
        if self.class_names is None:
            return mean
        return {self.name: mean, **self._per_class_logs(iou, "mean_iou", "iou")}
