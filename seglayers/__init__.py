"""seglayers: semantic segmentation for Keras 3."""

from seglayers.layers.attention_gate import AttentionGate
from seglayers.layers.conv_block import ConvBlock
from seglayers.layers.decoder_block import DecoderBlock
from seglayers.layers.encoder_block import EncoderBlock
from seglayers.models.unet import UNet

__version__ = "0.1.0"

__all__ = [
    "AttentionGate",
    "ConvBlock",
    "DecoderBlock",
    "EncoderBlock",
    "UNet",
]
