from seglayers.models.unet import UNet

__all__ = ["UNet"]
