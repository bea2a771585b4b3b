import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import check_choice, check_positive_int, check_rate
from seglayers.layers._spatial import match_spatial_size, upsample_bilinear_2x
from seglayers.layers.conv_block import ConvBlock
from seglayers.models._checks import (
    check_encoder_levels,
    check_pyramid_model_arguments,
)
from seglayers.models.segmentation_model import SegmentationModel

MERGE_POLICIES = ("add", "cat")


@register
class FPN(SegmentationModel):
    """The feature pyramid network of Kirillov et al. (2019, "Panoptic
    Feature Pyramid Networks"): its semantic-segmentation branch over an
    encoder.

    The encoder's features at levels `"P2"` (stride 4) to `"P{depth}"` each
    go through a lateral 1×1 convolution to `pyramid_channels`; a top-down
    pathway upsamples the deeper sum (nearest neighbour, 2×) and adds each
    shallower lateral. Every level of that pyramid then runs a segmentation
    block, 3×3 convolution → group normalization (32 groups, fewer when
    `segmentation_channels` is no multiple of 32) → ReLU followed
    by bilinear 2× upsampling, repeated until it reaches stride 4 (one
    convolution and no upsampling at stride 4). The blocks' outputs are
    merged (`"add"`, or `"cat"`: concatenated), dropped out channel-wise
    (`SpatialDropout2D`), and the 1×1 head's input is upsampled bilinearly
    from stride 4 to the input's size. This is segmentation_models.pytorch's
    `FPN` decoder and head, with their number of parameters for an encoder
    of the same channels (its blocks upsample with corner-aligned bilinear
    interpolation, these with the half-pixel one of Keras's resizing).

    The FPN has no encoder of its own: it defaults to a ResNet50
    (`encoder="resnet50"`, the paper's backbone, with random weights unless
    `encoder_weights="imagenet"`), and `encoder=None` is refused. Inputs of
    any height and width of at least `2**depth` work (`depth` 5: 32), the
    output has the input's size. Inputs are in [0, 255], mapped as the
    encoder's pretrained weights expect (see `encoder_preprocessing`).
    Images only (`spatial_dims=2`): for volumes use `UNet(spatial_dims=3)`.

    Args:
        num_classes: int, the number of classes (channels of the output).
            Use 1 with a sigmoid output for binary segmentation.
        pyramid_channels: int, the channels of the lateral convolutions and
            the top-down pathway. Defaults to 256.
        segmentation_channels: int, the channels of the segmentation blocks.
            Defaults to 128.
        merge_policy: `"add"` (sum the levels) or `"cat"` (concatenate:
            `depth - 1` times `segmentation_channels` for the head).
            Defaults to `"add"`.
        dropout: float in [0, 1), the rate of the channel-wise dropout before
            the head. Defaults to 0.2.
        depth: int from 3 to 5, the deepest encoder level read (stride
            `2**depth`). Defaults to 5.
        output_activation: `"auto"` (softmax for several classes, sigmoid for
            one), `"softmax"`, `"sigmoid"` or `None` for logits.
            Defaults to `"auto"`.
        encoder: a name from `seglayers.models.encoders.ENCODERS`, a
            functional `keras.Model` or a keras-hub backbone with
            `pyramid_outputs`, as for `UNet`. It needs features at every
            stride from 4 to `2**depth`. Defaults to `"resnet50"`.
        encoder_weights: `None` (random), `"imagenet"` or the path of a
            weights file, for an encoder given by name. Defaults to `None`.
        encoder_trainable: bool, `False` freezes the encoder and its batch
            statistics. Defaults to `True`.
        encoder_preprocessing: `"auto"`, `"caffe"`, `"tf"`, `"torch"` or
            `None`, as for `UNet`. Defaults to `"auto"`.
        rescale: float or `None`, a factor applied to the inputs first.
            Defaults to `None`.
        **kwargs: `keras.Model` keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor.
        training: bool, whether normalization and dropout run in training mode.

    Input shape:
        `(batch, height, width, channels)`, height and width at least
        `2**depth`.

    Output shape:
        `(batch, height, width, num_classes)`.

    Example:

    >>> model = FPN(num_classes=3, encoder="mobilenetv3small",
    ...             pyramid_channels=32, segmentation_channels=32)
    >>> tuple(model(keras.ops.ones((1, 75, 64, 3))).shape)
    (1, 75, 64, 3)
    """

    def __init__(
        self,
        num_classes,
        pyramid_channels=256,
        segmentation_channels=128,
        merge_policy="add",
        dropout=0.2,
        depth=5,
        output_activation="auto",
        encoder="resnet50",
        encoder_weights=None,
        encoder_trainable=True,
        encoder_preprocessing="auto",
        rescale=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "fpn")
        check_pyramid_model_arguments("FPN", encoder, kwargs.get("spatial_dims", 2))
        depth = check_choice("depth", depth, (3, 4, 5))
        super().__init__(
            num_classes,
            depth=depth,
            output_activation=output_activation,
            encoder=encoder,
            encoder_weights=encoder_weights,
            encoder_trainable=encoder_trainable,
            encoder_preprocessing=encoder_preprocessing,
            rescale=rescale,
            **kwargs,
        )
        pyramid_channels = check_positive_int("pyramid_channels", pyramid_channels)
        segmentation_channels = check_positive_int(
            "segmentation_channels", segmentation_channels
        )
        check_choice("merge_policy", merge_policy, MERGE_POLICIES)
        dropout = check_rate("dropout", dropout)
        # The levels read, deepest first, as the top-down pathway runs.
        self.levels = [f"P{level}" for level in range(depth, 1, -1)]
        check_encoder_levels("FPN", self.levels, self.encoder_levels, encoder)

        # === Layers ===
        dtype = self.dtype_policy
        self.lateral_convs = [
            keras.layers.Conv2D(
                pyramid_channels, 1, dtype=dtype, name=f"lateral_{level}"
            )
            for level in self.levels
        ]
        self.top_down_upsampling = keras.layers.UpSampling2D(
            2, dtype=dtype, name="top_down_upsampling"
        )
        # A level k block upsamples k - 2 times, after each of its
        # convolutions (P2's has one, and no upsampling): one flat list,
        # deepest level first, read in order by `decode`.
        self.segmentation_blocks = [
            ConvBlock(
                segmentation_channels,
                num_convs=1,
                normalization="group",
                dtype=dtype,
                name=f"segmentation_{level}_{i}",
            )
            for level in self.levels
            for i in range(max(1, int(level[1:]) - 2))
        ]
        self.dropout_layer = None
        if dropout:
            self.dropout_layer = keras.layers.SpatialDropout2D(
                dropout, dtype=dtype, name="dropout"
            )
        self.make_head()

        # === Config ===
        self.pyramid_channels = pyramid_channels
        self.segmentation_channels = segmentation_channels
        self.merge_policy = merge_policy
        self.dropout = dropout
        # The merged features are at stride 4; the base upsamples the rest.
        self.output_level = 2

    def decode(self, pyramid, training=None):
        # Top-down: each level's lateral plus the deeper level, upsampled and
        # cropped to it (odd sizes round up on the way down).
        top_down = []
        x = None
        for level, lateral in zip(self.levels, self.lateral_convs):
            skip = lateral(pyramid[level])
            if x is not None:
                skip = match_spatial_size(self.top_down_upsampling(x), skip) + skip
            x = skip
            top_down.append(x)
        blocks = iter(self.segmentation_blocks)
        merged = []
        for level, x in zip(self.levels, top_down):
            for _ in range(max(1, int(level[1:]) - 2)):
                x = next(blocks)(x, training=training)
                if level != "P2":
                    x = upsample_bilinear_2x(x)
            merged.append(match_spatial_size(x, top_down[-1]))
        if self.merge_policy == "add":
            x = sum(merged[1:], merged[0])
        else:
            x = ops.concatenate(merged, axis=-1)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pyramid_channels": self.pyramid_channels,
                "segmentation_channels": self.segmentation_channels,
                "merge_policy": self.merge_policy,
                "dropout": self.dropout,
            }
        )
        return config
