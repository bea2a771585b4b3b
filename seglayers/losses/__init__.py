from seglayers.losses.dice_cross_entropy_loss import DiceCrossEntropyLoss
from seglayers.losses.dice_loss import DiceLoss
from seglayers.losses.focal_loss import FocalLoss

__all__ = ["DiceCrossEntropyLoss", "DiceLoss", "FocalLoss"]
