"""The U-Net's own encoder (its contracting path), shared by the models
that bring one when `encoder=None` (`UNet`, `UNetPlusPlus`).

Kept as two functions rather than a layer so that each model holds the
blocks under its own attributes (`encoder_blocks`, `bottleneck`): the
weight paths of files saved by seglayers 0.1.0 stay as they were.
"""

import keras

from seglayers.layers.conv_block import ConvBlock
from seglayers.layers.encoder_block import EncoderBlock


def make_contracting_path(widths, dropout, block_args):
    """`(encoder_blocks, bottleneck)` for `len(widths) - 1` levels.

    `widths` holds the channels of every level, top to bottleneck;
    `block_args` the `ConvBlock` arguments shared by every block (with
    `dtype`). Dropout sits at the end of the contracting path (the deepest
    encoder block and the bottleneck), as in the paper's own model.
    """
    depth = len(widths) - 1
    encoder_blocks = [
        EncoderBlock(
            widths[level],
            dropout=dropout if level == depth - 1 else 0.0,
            name=f"encoder_{level}",
            **block_args,
        )
        for level in range(depth)
    ]
    bottleneck = ConvBlock(
        widths[depth], dropout=dropout, name="bottleneck", **block_args
    )
    return encoder_blocks, bottleneck


def run_contracting_path(encoder_blocks, bottleneck, x, training=None):
    """The contracting path as a pyramid: `"P0"` (stride 1) to
    `"P{depth}"`, the bottleneck's output."""
    pyramid = {}
    for level, block in enumerate(encoder_blocks):
        x, pyramid[f"P{level}"] = block(x, training=training)
    pyramid[f"P{len(encoder_blocks)}"] = bottleneck(x, training=training)
    return pyramid


def make_encoder_side(model, widths, dropout, block_args):
    """Sets `model.encoder_blocks` and `model.bottleneck` (the contracting
    path, when `model` has no pluggable `encoder`) and `model.bottom_dropout`
    (dropout on a pluggable encoder's deepest features, where the
    contracting path has its own), in this order: the order in which layers
    are made is the order of their weights in saved files."""
    model.encoder_blocks = []
    model.bottleneck = None
    model.bottom_dropout = None
    if model.encoder is None:
        model.encoder_blocks, model.bottleneck = make_contracting_path(
            widths, dropout, block_args
        )
    elif dropout:
        model.bottom_dropout = keras.layers.Dropout(
            dropout, dtype=model.dtype_policy, name="bottom_dropout"
        )
