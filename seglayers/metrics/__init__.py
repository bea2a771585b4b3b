from seglayers.metrics.mean_dice import MeanDice
from seglayers.metrics.mean_iou import MeanIoU
from seglayers.metrics.per_class_iou import PerClassIoU
from seglayers.metrics.pixel_accuracy import PixelAccuracy

__all__ = ["MeanDice", "MeanIoU", "PerClassIoU", "PixelAccuracy"]


def deprecated_iou(where, stacklevel=2):
    """`PerClassIoU`, with the warning that 0.1.0's `IoU` is its old name
    (`where`: the name the caller used, e.g. "seglayers.IoU")."""
    import warnings

    warnings.warn(
        f"`{where}` is now `seglayers.PerClassIoU` (it returns one IoU per "
        "class, where `keras.metrics.IoU` returns a mean). Files that saved it "
        "load either way.",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return PerClassIoU


def __getattr__(name):
    # 0.1.0's `from seglayers.metrics import IoU`.
    if name == "IoU":
        return deprecated_iou("seglayers.metrics.IoU")
    raise AttributeError(f"module 'seglayers.metrics' has no attribute {name!r}")
