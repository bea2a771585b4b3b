from seglayers.metrics.mean_dice import MeanDice
from seglayers.metrics.mean_iou import MeanIoU
from seglayers.metrics.per_class_iou import PerClassIoU
from seglayers.metrics.pixel_accuracy import PixelAccuracy

__all__ = ["MeanDice", "MeanIoU", "PerClassIoU", "PixelAccuracy"]
