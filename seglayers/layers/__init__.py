from seglayers.layers.aspp import ASPP
from seglayers.layers.attention_gate import AttentionGate
from seglayers.layers.conv_block import ConvBlock
from seglayers.layers.decoder_block import DecoderBlock
from seglayers.layers.encoder_block import EncoderBlock

__all__ = ["ASPP", "AttentionGate", "ConvBlock", "DecoderBlock", "EncoderBlock"]
