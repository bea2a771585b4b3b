from seglayers.metrics.iou import IoU
from seglayers.metrics.mean_dice import MeanDice
from seglayers.metrics.mean_iou import MeanIoU
from seglayers.metrics.pixel_accuracy import PixelAccuracy

__all__ = ["IoU", "MeanDice", "MeanIoU", "PixelAccuracy"]
