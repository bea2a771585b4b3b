from seglayers.models.deeplab_v3_plus import DeepLabV3Plus
from seglayers.models.fpn import FPN
from seglayers.models.unet import UNet

__all__ = ["DeepLabV3Plus", "FPN", "UNet"]
