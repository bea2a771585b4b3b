"""seglayers: semantic segmentation for Keras 3."""

from seglayers import _backend

# With an unusable KERAS_BACKEND the package imports empty, so that the
# `seglayers` command can say so in one line (see `_backend.py`).
if _backend.KERAS_ERROR is None:
    from seglayers import datasets, distribute
    from seglayers.callbacks.mask_visualizer import MaskVisualizer
    from seglayers.inference.evaluation import evaluate_segmentation
    from seglayers.inference.predict_tiled import predict_tiled
    from seglayers.inference.prediction import predict_mask
    from seglayers.layers.aspp import ASPP
    from seglayers.layers.attention_gate import AttentionGate
    from seglayers.layers.conv_block import ConvBlock
    from seglayers.layers.decoder_block import DecoderBlock
    from seglayers.layers.encoder_block import EncoderBlock
    from seglayers.losses.dice_cross_entropy_loss import DiceCrossEntropyLoss
    from seglayers.losses.dice_loss import DiceLoss
    from seglayers.losses.focal_loss import FocalLoss
    from seglayers.metrics.mean_dice import MeanDice
    from seglayers.metrics.mean_iou import MeanIoU
    from seglayers.metrics.per_class_iou import PerClassIoU
    from seglayers.metrics.pixel_accuracy import PixelAccuracy
    from seglayers.models.deeplab_v3_plus import DeepLabV3Plus
    from seglayers.models.fpn import FPN
    from seglayers.models.segmentation_model import SegmentationModel
    from seglayers.models.unet import UNet
    from seglayers.models.unet_plus_plus import UNetPlusPlus
    from seglayers.preprocessing.one_hot_mask import OneHotMask

__version__ = "0.2.0.dev0"


def __getattr__(name):
    if _backend.KERAS_ERROR is not None and name in (*__all__, "IoU"):
        raise ImportError(f"seglayers: {_backend.KERAS_ERROR}")
    # The loaders import TensorFlow; load them only when asked for, so that
    # `import seglayers` stays light on the JAX and PyTorch backends.
    if name == "IoU":
        from seglayers.metrics import deprecated_iou

        return deprecated_iou("seglayers.IoU")
    if name == "segmentation_dataset_from_directory":
        from seglayers.data.directory import segmentation_dataset_from_directory

        return segmentation_dataset_from_directory
    if name == "volume_dataset_from_directory":
        from seglayers.data.volumes import volume_dataset_from_directory

        return volume_dataset_from_directory
    raise AttributeError(f"module 'seglayers' has no attribute {name!r}")


__all__ = [
    "ASPP",
    "AttentionGate",
    "ConvBlock",
    "DecoderBlock",
    "DeepLabV3Plus",
    "DiceCrossEntropyLoss",
    "DiceLoss",
    "EncoderBlock",
    "FPN",
    "FocalLoss",
    "MeanDice",
    "MaskVisualizer",
    "MeanIoU",
    "OneHotMask",
    "PerClassIoU",
    "PixelAccuracy",
    "SegmentationModel",
    "UNet",
    "UNetPlusPlus",
    "datasets",
    "distribute",
    "evaluate_segmentation",
    "predict_mask",
    "predict_tiled",
    "segmentation_dataset_from_directory",
    "volume_dataset_from_directory",
]
