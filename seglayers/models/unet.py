import copy

import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import check_bool, check_choice, check_positive_int
from seglayers.layers.conv_block import ConvBlock
from seglayers.layers.decoder_block import DecoderBlock, match_spatial_size
from seglayers.layers.encoder_block import EncoderBlock
from seglayers.models import encoders
from seglayers.models._checks import check_input_shape, level_filters
from seglayers.models.segmentation_model import SegmentationModel

OUTPUT_ACTIVATIONS = ("auto", "softmax", "sigmoid", None)


@register
class UNet(SegmentationModel):
    """The U-Net of Ronneberger et al. (2015) for semantic segmentation.

    An encoder of `depth` `EncoderBlock`s (convolutions, then 2× pooling), a
    bottleneck `ConvBlock`, a decoder of `depth` `DecoderBlock`s (upsampling,
    concatenation with the encoder's skip, convolutions) and a 1×1
    convolution head with `num_classes` channels. Convolutions use same
    padding, so the output has the input's height and width.

    `UNet(num_classes=2, filters=64, depth=4, normalization=None,
    upsampling="transpose")` is the paper's network (23 convolutions,
    31,031,810 parameters) with same padding; the defaults add batch
    normalization, which trains faster and more reliably.

    Inputs of any height and width work. Sizes divisible by `2**depth` are
    best; for other sizes each `DecoderBlock` zero-pads its upsampled features
    at the bottom and right edge to the size of the skip. Inputs are used as
    given: pass `rescale=1 / 255` for images in `[0, 255]`, the range Keras's
    image utilities and `seglayers`' loaders produce.

    Under a mixed-precision policy the head (and so the output) stays float32.

    Args:
        num_classes: int, the number of classes (channels of the output). Use
            1 with a sigmoid output for binary segmentation.
        filters: int, the channels of the top level, doubled at every level
            below; or a list of `depth + 1` ints for every level, top to
            bottleneck. Defaults to 64, or 16 with an `encoder` (a decoder of
            256, 128, 64, 32 and 16 channels, as in segmentation_models).
        depth: int, the number of poolings (and of upsamplings). Defaults to
            4, or 5 with an `encoder` (its stride-32 features at the bottom).
        num_convs: int, convolutions per block. Defaults to 2.
        normalization: `"batch"`, `"group"`, `"layer"` or `None`.
            Defaults to `"batch"`.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout at the end of the contracting path
            (after the deepest encoder block and the bottleneck, as in the
            paper's own model). Defaults to 0.
        upsampling: `"transpose"`, `"bilinear"` or `"nearest"`.
            Defaults to `"transpose"`.
        attention: bool, whether `AttentionGate`s weigh the skips (Attention
            U-Net, Oktay et al. 2018). Defaults to `False`.
        residual: bool, whether every block has a residual shortcut.
            Defaults to `False`.
        output_activation: `"auto"` (softmax for several classes, sigmoid for
            one), `"softmax"`, `"sigmoid"` or `None` for logits (then use a
            loss with `from_logits=True`). Defaults to `"auto"`.
        encoder: `None` for the U-Net's own encoder; or a pretrained-style
            encoder: a name from `seglayers.models.encoders.ENCODERS`
            (`"resnet50"`, `"resnet50v2"`, `"efficientnetv2b0"`,
            `"mobilenetv3small"`, `"mobilenetv3large"`, `"convnexttiny"`, ...;
            the `keras.applications` model without its top), a functional
            `keras.Model` such as `keras.applications.ResNet50(
            include_top=False, weights=None)`, or a keras-hub backbone with
            `pyramid_outputs`. Its features at strides 2, 4, 8 and 16 are the
            skips and those at stride `2**depth` the bottom; the decoder
            upsamples back to the input size (levels the encoder lacks, such
            as stride 2 in ConvNeXt, get no skip). `unet.encoder` is then the
            functional model giving those features, sharing the layers and
            weights of the model passed. An encoder built for a fixed size
            (`input_shape=(224, 224, 3)`) makes a `UNet` for that size only;
            build it with `input_shape=(None, None, 3)` for any size.
        encoder_weights: for an encoder given by name, `None` (random, the
            default) or `"imagenet"` (downloaded by `keras.applications` at
            construction). Saved models restore their own weights instead.
        encoder_trainable: bool, `False` freezes the encoder, which then
            also runs its batch normalization in inference mode, for
            fine-tuning the decoder first. Defaults to `True`.
        encoder_preprocessing: how inputs in [0, 255] are mapped before the
            encoder: `"auto"` (the default: what the named encoder's
            pretrained weights expect: `"caffe"` for ResNet, `"tf"` for
            ResNetV2, none for EfficientNetV2, MobileNetV3 and ConvNeXt,
            which rescale inside; none for an encoder passed as a model),
            `"caffe"` (RGB to BGR minus the ImageNet mean), `"tf"` (to
            [-1, 1]), `"torch"` (to [0, 1], then the ImageNet mean and std)
            or `None`.
        rescale: float or `None`, a factor applied to the inputs first, e.g.
            `1 / 255`. Defaults to `None` (inputs used as given; leave it so
            with an `encoder`, which expects [0, 255]).
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

    >>> model = UNet(num_classes=3, filters=4, depth=2)
    >>> model.build((None, None, None, 3))
    >>> model.count_params()
    7719
    >>> tuple(model(keras.ops.ones((1, 32, 32, 3))).shape)
    (1, 32, 32, 3)
    """

    def __init__(
        self,
        num_classes,
        filters=None,
        depth=None,
        num_convs=2,
        normalization="batch",
        activation="relu",
        dropout=0.0,
        upsampling="transpose",
        attention=False,
        residual=False,
        output_activation="auto",
        encoder=None,
        encoder_weights=None,
        encoder_trainable=True,
        encoder_preprocessing="auto",
        rescale=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "unet")
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes)
        own_encoder = encoder is None
        resolved_depth = depth if depth is not None else (4 if own_encoder else 5)
        check_positive_int("depth", resolved_depth)
        if not own_encoder and resolved_depth > 5:
            raise ValueError(
                "With an `encoder`, `depth` can be at most 5 (the features at "
                f"stride 32 are the deepest used). Received: depth={depth}"
            )
        default_filters = 64 if own_encoder else 16
        widths = level_filters(
            filters if filters is not None else default_filters, resolved_depth
        )
        check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        check_bool("attention", attention)
        check_bool("encoder_trainable", encoder_trainable)
        check_choice(
            "encoder_preprocessing",
            encoder_preprocessing,
            ("auto",) + encoders.PREPROCESSINGS,
        )
        if rescale is not None and (
            isinstance(rescale, bool) or not isinstance(rescale, (int, float))
        ):
            raise TypeError(
                "`rescale` must be a number such as 1 / 255, or None. "
                f"Received: rescale={rescale!r}"
            )
        if output_activation == "auto":
            head_activation = "softmax" if num_classes > 1 else "sigmoid"
        else:
            head_activation = output_activation or "linear"

        # === Layers ===
        self.rescaling = None
        if rescale is not None:
            self.rescaling = keras.layers.Rescaling(
                rescale, dtype=self.dtype_policy, name="rescaling"
            )
        block_args = dict(
            num_convs=num_convs,
            normalization=normalization,
            activation=activation,
            residual=residual,
            dtype=self.dtype_policy,
        )
        self.encoder = None
        self.encoder_blocks = []
        self.bottleneck = None
        self.bottom_dropout = None
        # Decoder levels with a skip, bottom-up (a pretrained-style encoder
        # may lack some, e.g. stride 2).
        self._skip_levels = set(range(resolved_depth))
        preprocessing = None
        if own_encoder:
            self.encoder_blocks = [
                EncoderBlock(
                    widths[level],
                    dropout=dropout if level == resolved_depth - 1 else 0.0,
                    name=f"encoder_{level}",
                    **block_args,
                )
                for level in range(resolved_depth)
            ]
            self.bottleneck = ConvBlock(
                widths[resolved_depth], dropout=dropout, name="bottleneck", **block_args
            )
        else:
            if isinstance(encoder, str):
                encoder, preprocessing = encoders.build_encoder(
                    encoder, weights=encoder_weights
                )
            self.encoder, strides = encoders.feature_pyramid(encoder, resolved_depth)
            self.encoder.trainable = encoder_trainable
            self._skip_levels = {s.bit_length() - 1 for s in strides[:-1]}
            if dropout:
                self.bottom_dropout = keras.layers.Dropout(
                    dropout, dtype=self.dtype_policy, name="bottom_dropout"
                )
        if encoder_preprocessing != "auto":
            preprocessing = encoder_preprocessing
        # Bottom-up, so decoder_blocks[i] works at level depth - 1 - i: it
        # upsamples to that level, joins its skip, and brings the features to
        # the level's width.
        self.decoder_blocks = [
            DecoderBlock(
                widths[level],
                upsampling=upsampling,
                attention=attention and level in self._skip_levels,
                name=f"decoder_{level}",
                **block_args,
            )
            for level in reversed(range(resolved_depth))
        ]
        # The head computes in float32 under mixed precision, for stable
        # softmax and losses.
        self.head = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="head")
        self.head_activation = keras.layers.Activation(
            head_activation, dtype="float32", name="head_activation"
        )

        # === Config ===
        self.num_classes = num_classes
        self.filters = filters
        self.depth = resolved_depth
        self.num_convs = num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.upsampling = upsampling
        self.attention = attention
        self.residual = residual
        self.output_activation = output_activation
        self.encoder_weights = encoder_weights
        self.encoder_trainable = encoder_trainable
        self.encoder_preprocessing = preprocessing
        self.rescale = rescale
        self.input_channels = None
        if self.encoder is not None:
            self.input_channels = self.encoder.inputs[0].shape[-1]

    def _check_input_shape(self, shape):
        return check_input_shape(
            shape, self.input_channels, self.depth, self.encoder, type(self).__name__
        )

    def build(self, input_shape):
        shape = self._check_input_shape(input_shape)
        self.input_channels = shape[-1]
        if self.encoder is None:
            skips = []
            for block in self.encoder_blocks:
                block.build(shape)
                shape, skip = block.compute_output_shape(shape)
                skips.append(skip)
            self.bottleneck.build(shape)
            shape = self.bottleneck.compute_output_shape(shape)
        else:
            *skips, shape = self.encoder.compute_output_shape(shape)
        skips = self._skips_by_level(skips)
        for block in self.decoder_blocks:
            skip = skips.pop()
            block_input = shape if skip is None else [shape, skip]
            block.build(block_input)
            shape = block.compute_output_shape(block_input)
        self.head.build(shape)
        self.built = True

    def _skips_by_level(self, skips):
        """The skips, top level first, with `None` at levels without one."""
        skips = list(skips)
        return [
            skips.pop(0) if level in self._skip_levels else None
            for level in range(self.depth)
        ]

    def call(self, inputs, training=None):
        self._check_input_shape(inputs.shape)
        x = inputs
        if self.rescaling is not None:
            x = self.rescaling(x)
        if self.encoder is None:
            skips = []
            for block in self.encoder_blocks:
                x, skip = block(x, training=training)
                skips.append(skip)
            x = self.bottleneck(x, training=training)
        else:
            # A tensor, not numpy: Keras's loading calls the model on numpy
            # arrays on JAX, and a functional encoder then warns that the
            # structure of its inputs does not match (tests/compatibility_test.py).
            x = ops.convert_to_tensor(x)
            x = encoders.preprocess(x, self.encoder_preprocessing)
            # A frozen encoder also keeps its batch statistics.
            *skips, x = self.encoder(
                x, training=training if self.encoder_trainable else False
            )
            if self.bottom_dropout is not None:
                x = self.bottom_dropout(x, training=training)
        skips = self._skips_by_level(skips)
        for block in self.decoder_blocks:
            skip = skips.pop()
            x = block(x if skip is None else [x, skip], training=training)
        if self.encoder is not None:
            # An encoder's padding may round sizes up on the way down.
            x = match_spatial_size(x, inputs)
        return self.head_activation(self.head(x))

    def compute_output_shape(self, input_shape):
        shape = self._check_input_shape(input_shape)
        return shape[:-1] + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "filters": self.filters,
                "depth": self.depth,
                "num_convs": self.num_convs,
                "normalization": self.normalization,
                "activation": self.activation,
                "dropout": self.dropout,
                "upsampling": self.upsampling,
                "attention": self.attention,
                "residual": self.residual,
                "output_activation": self.output_activation,
                "encoder": None,
                "encoder_weights": self.encoder_weights,
                "encoder_trainable": self.encoder_trainable,
                "encoder_preprocessing": self.encoder_preprocessing,
                "rescale": self.rescale,
            }
        )
        if self.encoder is not None:
            # The feature model itself, so that loading rebuilds it without
            # downloading anything; the file's weights fill it.
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
            config["encoder_weights"] = None
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("encoder"), dict):
            # Keras's deserialization empties the dict it reads; keep the
            # caller's config whole.
            config["encoder"] = keras.saving.deserialize_keras_object(
                copy.deepcopy(config["encoder"])
            )
        return cls(**config)
