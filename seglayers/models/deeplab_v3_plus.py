import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import (
    check_bool,
    check_choice,
    check_dilation_rates,
    check_positive_int,
    check_rate,
)
from seglayers.layers._normalization import make_normalization
from seglayers.layers._spatial import (
    atrous_conv,
    match_spatial_size,
    upsample_bilinear_2x,
)
from seglayers.layers.aspp import ASPP
from seglayers.models._checks import (
    check_encoder_levels,
    check_pyramid_model_arguments,
)
from seglayers.models.segmentation_model import SegmentationModel

OUTPUT_STRIDES = (8, 16)


@register
class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ of Chen et al. (2018, "Encoder-Decoder with Atrous
    Separable Convolution for Semantic Image Segmentation") over an encoder.

    The encoder's features at `output_stride` go through `ASPP` (atrous
    spatial pyramid pooling) and a 3×3 convolution → batch normalization →
    ReLU, are upsampled bilinearly to stride 4 and concatenated with the
    encoder's stride-4 features reduced to `low_level_filters` channels
    (1×1 convolution → batch normalization → ReLU); a 3×3 convolution →
    batch normalization → ReLU fuses them, and the 1×1 head's input is
    upsampled bilinearly to the input's size. With the defaults this is
    segmentation_models.pytorch's `DeepLabV3Plus` decoder (separable 3×3
    convolutions, one fusing convolution, dropout 0.5 in the ASPP), with its
    number of parameters for features of the same channels; its encoders
    are dilated, so its ASPP reads the deepest stage's channels (2048 in a
    ResNet50), where this one reads the stage at the output stride (1024).

    The output stride: the paper dilates the encoder's last stages so that
    they keep stride 16 (or 8). A built Keras model cannot be re-dilated, so
    here the ASPP reads the encoder's own features at `output_stride` (level
    `"P4"` at 16, `"P3"` at 8) and the encoder's deeper stages are left out
    of the model: not built into the pyramid, not computed, not saved. That
    keeps the resolution the output stride exists for and skips the work of
    the deepest stages; the ASPP's dilations widen the field of view in
    their place. (Reading the stride-32 features and upsampling them would
    cost those stages and give stride-32 detail.) Inputs then need to be at
    least `output_stride` in height and width; any size works, and the
    output has the input's size.

    The model has no encoder of its own: it defaults to a ResNet50
    (`encoder="resnet50"`, random weights unless
    `encoder_weights="imagenet"`), and `encoder=None` is refused, as are
    encoders without features at stride 4 or at `output_stride`. Inputs are
    in [0, 255], mapped as the encoder's pretrained weights expect. Images
    only (`spatial_dims=2`).

    Args:
        num_classes: int, the number of classes (channels of the output).
            Use 1 with a sigmoid output for binary segmentation.
        filters: int, the channels of the ASPP and the decoder.
            Defaults to 256.
        output_stride: 16 or 8, the stride of the features the ASPP reads.
            Defaults to 16.
        dilation_rates: list of ints, the ASPP's atrous rates, or `None` for
            the paper's: `[6, 12, 18]` at output stride 16, doubled
            (`[12, 24, 36]`) at 8. Defaults to `None`.
        low_level_filters: int, the channels the stride-4 features are
            reduced to. Defaults to 48, the paper's.
        separable: bool, whether the 3×3 convolutions of the ASPP and the
            decoder are depthwise-separable (the paper's and
            segmentation_models.pytorch's) or plain. Defaults to `True`.
        dropout: float in [0, 1), the dropout after the ASPP's projection.
            Defaults to 0.5.
        output_activation: `"auto"` (softmax for several classes, sigmoid for
            one), `"softmax"`, `"sigmoid"` or `None` for logits.
            Defaults to `"auto"`.
        encoder: a name from `seglayers.models.encoders.ENCODERS`, a
            functional `keras.Model` or a keras-hub backbone with
            `pyramid_outputs`, as for `UNet`. Defaults to `"resnet50"`.
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
        `output_stride`.

    Output shape:
        `(batch, height, width, num_classes)`.

    Example:

    >>> model = DeepLabV3Plus(num_classes=3, encoder="mobilenetv3small",
    ...                       filters=32, output_stride=8)
    >>> tuple(model(keras.ops.ones((1, 75, 64, 3))).shape)
    (1, 75, 64, 3)
    """

    def __init__(
        self,
        num_classes,
        filters=256,
        output_stride=16,
        dilation_rates=None,
        low_level_filters=48,
        separable=True,
        dropout=0.5,
        output_activation="auto",
        encoder="resnet50",
        encoder_weights=None,
        encoder_trainable=True,
        encoder_preprocessing="auto",
        rescale=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "deeplab_v3_plus")
        check_pyramid_model_arguments(
            "DeepLabV3Plus", encoder, kwargs.get("spatial_dims", 2)
        )
        # A Python int: 16.0 is refused, np.int64(16) stored as 16 (JSON).
        output_stride = check_choice("output_stride", output_stride, OUTPUT_STRIDES)
        depth = output_stride.bit_length() - 1
        if "depth" in kwargs:
            raise ValueError(
                "`DeepLabV3Plus` takes no `depth`: `output_stride` sets it (16: "
                "features down to stride 16, 8: down to stride 8). Pass "
                f"output_stride=8 or 16. Received: depth={kwargs['depth']!r}"
            )
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
        filters = check_positive_int("filters", filters)
        low_level_filters = check_positive_int("low_level_filters", low_level_filters)
        separable = check_bool("separable", separable)
        dropout = check_rate("dropout", dropout)
        if dilation_rates is None:
            rates = [rate * 16 // output_stride for rate in (6, 12, 18)]
        else:
            rates = list(check_dilation_rates(dilation_rates))
        check_encoder_levels(
            "DeepLabV3Plus", ["P2", f"P{depth}"], self.encoder_levels, encoder
        )

        # === Layers ===
        dtype = self.dtype_policy
        self.aspp = ASPP(
            filters,
            dilation_rates=rates,
            separable=separable,
            dropout=dropout,
            dtype=dtype,
            name="aspp",
        )
        self.aspp_conv = atrous_conv(filters, 3, 1, separable, "aspp_conv", dtype)
        self.aspp_norm = make_normalization("batch", filters, "aspp_norm", dtype)
        self.low_level_conv = keras.layers.Conv2D(
            low_level_filters, 1, use_bias=False, dtype=dtype, name="low_level_conv"
        )
        self.low_level_norm = make_normalization(
            "batch", low_level_filters, "low_level_norm", dtype
        )
        self.fuse_conv = atrous_conv(filters, 3, 1, separable, "fuse_conv", dtype)
        self.fuse_norm = make_normalization("batch", filters, "fuse_norm", dtype)
        self.activation_layer = keras.layers.Activation(
            "relu", dtype=dtype, name="activation"
        )
        self.make_head()

        # === Config ===
        self.filters = filters
        self.output_stride = output_stride
        self.dilation_rates = dilation_rates if dilation_rates is None else rates
        self.low_level_filters = low_level_filters
        self.separable = separable
        self.dropout = dropout
        # The fused features are at stride 4; the base upsamples the rest.
        self.output_level = 2

    def _conv_norm_relu(self, conv, norm, x, training):
        return self.activation_layer(norm(conv(x), training=training))

    def decode(self, pyramid, training=None):
        x = self.aspp(pyramid[f"P{self.depth}"], training=training)
        x = self._conv_norm_relu(self.aspp_conv, self.aspp_norm, x, training)
        low = self._conv_norm_relu(
            self.low_level_conv, self.low_level_norm, pyramid["P2"], training
        )
        # Stride 16 (or 8) to 4, in 2x bilinear steps, then cropped to the
        # stride-4 features (odd sizes round up on the way down).
        for _ in range(self.depth - 2):
            x = upsample_bilinear_2x(x)
        x = ops.concatenate([match_spatial_size(x, low), low], axis=-1)
        return self._conv_norm_relu(self.fuse_conv, self.fuse_norm, x, training)

    def get_config(self):
        config = super().get_config()
        del config["depth"]  # set by `output_stride`
        config.update(
            {
                "filters": self.filters,
                "output_stride": self.output_stride,
                "dilation_rates": self.dilation_rates,
                "low_level_filters": self.low_level_filters,
                "separable": self.separable,
                "dropout": self.dropout,
            }
        )
        return config
