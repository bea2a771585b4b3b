"""A new architecture on `seglayers.SegmentationModel`: the decoder, nothing else.

The base class runs `rescale -> encoder -> decode -> resize -> head` and
owns the input checks, the encoder (a name, a Keras model or a keras-hub
backbone, as a pyramid of features by level: "P1" at stride 2 ... "P5" at
stride 32), its freezing and preprocessing, the float32 head, the resize
back to the input's size, saving and export. `LightUNet` writes a U-Net
style decoder that stops at stride 4, as smp's FPN and DeepLabV3+ do; the
base upsamples the rest of the way.

    model = LightUNet(num_classes=3, encoder="mobilenetv3small")
"""

import keras

import seglayers


@keras.saving.register_keras_serializable(package="my_project")
class LightUNet(seglayers.SegmentationModel):
    def __init__(self, num_classes, filters=32, encoder="mobilenetv3small", **kwargs):
        super().__init__(num_classes, encoder=encoder, **kwargs)
        # The levels the decoder reads, deepest first, down to stride 4.
        self.levels = [
            name for name in reversed(self.encoder_levels) if int(name[1:]) >= 2
        ]
        # === Layers === (upsample, join the level's features, convolve)
        self.decoder_blocks = [
            seglayers.DecoderBlock(filters, name=f"decoder_{name}")
            for name in self.levels[1:]
        ]
        self.make_head()  # last: layers are saved in the order they are made
        # === Config ===
        self.filters = filters
        # The decoder ends at the stride of its last level; the base
        # upsamples by 2**output_level back to the input's size.
        self.output_level = int(self.levels[-1][1:])

    def decode(self, pyramid, training=None):
        x = pyramid[self.levels[0]]
        for name, block in zip(self.levels[1:], self.decoder_blocks):
            x = block([x, pyramid[name]], training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
