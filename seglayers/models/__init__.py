from seglayers.models.deeplab_v3_plus import DeepLabV3Plus
from seglayers.models.fpn import FPN
from seglayers.models.segmentation_model import SegmentationModel
from seglayers.models.unet import UNet
from seglayers.models.unet_plus_plus import UNetPlusPlus

__all__ = ["DeepLabV3Plus", "FPN", "SegmentationModel", "UNet", "UNetPlusPlus"]
