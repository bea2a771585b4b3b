from seglayers._api import register, register_old_name
from seglayers.metrics._counting import per_class_iou
from seglayers.metrics.confusion_matrix import ConfusionMatrixMetric


@register
class PerClassIoU(ConfusionMatrixMetric):
    """Intersection-over-union of every class, as separate log entries.

    Named `IoU` up to seglayers 0.1 (`keras.metrics.IoU` returns one mean,
    this returns one value per class); files that saved it as `IoU` load as
    `PerClassIoU`.

    Reports `{name}/{class}` for every class, e.g. `iou/road`, from one
    streaming confusion matrix (`TP / (TP + FP + FN)`); a class absent from
    both truth and prediction has no IoU and reports NaN. Inputs are read as
    in `MeanIoU`.

    Args:
        num_classes: int, the number of classes (1: one sigmoid channel).
        ignore_class: int or `None`, the id of unlabelled pixels.
        class_names: optional list of names for the log keys; defaults to
            the class ids.
        threshold: float, the cut-off for one sigmoid channel.
            Defaults to 0.5.
        y_pred_format: `"auto"`, `"scores"` or `"ids"`. Defaults to `"auto"`.
        name: str, the prefix of the log keys. Defaults to `"iou"`.
        dtype: `None` or `"float32"`: results are always float32.

    Example:

    >>> metric = PerClassIoU(num_classes=2, class_names=["sky", "tree"])
    >>> metric.update_state(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    >>> {k: round(float(v), 4) for k, v in metric.result().items()}
    {'iou/sky': 0.5, 'iou/tree': 0.6667}
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_names=None,
        threshold=0.5,
        y_pred_format="auto",
        name="iou",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            class_names=class_names,
            threshold=threshold,
            y_pred_format=y_pred_format,
            name=name or "iou",  # not Keras's numbered per_class_io_u_1
            dtype=dtype,
        )

    def result(self):
        self._warn_out_of_range()
        return self._per_class_logs(
            per_class_iou(self.confusion_matrix()), "iou", "iou"
        )


register_old_name(PerClassIoU, "IoU")
