import keras

from seglayers._api import register
from seglayers._validation import check_choice, check_positive_int
from seglayers.layers.conv_block import ConvBlock
from seglayers.layers.decoder_block import DecoderBlock
from seglayers.layers.encoder_block import EncoderBlock

OUTPUT_ACTIVATIONS = ("auto", "softmax", "sigmoid", None)


def level_filters(filters, depth):
    """The channels of each level, top to bottom: `depth + 1` ints.

    An int is the top level's width, doubled at every level below it
    (64, 128, 256, 512, 1024 in the paper); a list gives every level.
    """
    if isinstance(filters, (list, tuple)):
        if len(filters) != depth + 1:
            raise ValueError(
                f"`filters` as a list needs one width per level, `depth` + 1 = "
                f"{depth + 1} values from the top level down to the bottleneck, "
                f"e.g. {[16 * 2**i for i in range(depth + 1)]}. "
                f"Received: filters={list(filters)} with depth={depth}"
            )
        for i, width in enumerate(filters):
            check_positive_int(f"filters[{i}]", width)
        return list(filters)
    check_positive_int("filters", filters)
    return [filters * 2**level for level in range(depth + 1)]


@register
class UNet(keras.Model):
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
            bottleneck. Defaults to 64.
        depth: int, the number of poolings (and of upsamplings). Defaults to 4.
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
        encoder: reserved for pluggable backbones; only `None` (the U-Net's
            own encoder) is supported in this version.
        rescale: float or `None`, a factor applied to the inputs first, e.g.
            `1 / 255`. Defaults to `None` (inputs used as given).
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
        filters=64,
        depth=4,
        num_convs=2,
        normalization="batch",
        activation="relu",
        dropout=0.0,
        upsampling="transpose",
        attention=False,
        residual=False,
        output_activation="auto",
        encoder=None,
        rescale=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "unet")
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes)
        check_positive_int("depth", depth)
        widths = level_filters(filters, depth)
        check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        if encoder is not None:
            raise ValueError(
                "Pluggable encoders are not supported yet; pass `encoder=None` "
                f"to use the U-Net's own encoder. Received: encoder={encoder!r}"
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
        self.encoder_blocks = [
            EncoderBlock(
                widths[level],
                dropout=dropout if level == depth - 1 else 0.0,
                name=f"encoder_{level}",
                **block_args,
            )
            for level in range(depth)
        ]
        self.bottleneck = ConvBlock(
            widths[depth], dropout=dropout, name="bottleneck", **block_args
        )
        # Bottom-up, so decoder_blocks[i] takes the skip of encoder level
        # depth - 1 - i and brings the features to that level's width.
        self.decoder_blocks = [
            DecoderBlock(
                widths[level],
                upsampling=upsampling,
                attention=attention,
                name=f"decoder_{level}",
                **block_args,
            )
            for level in reversed(range(depth))
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
        self.depth = depth
        self.num_convs = num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.upsampling = upsampling
        self.attention = attention
        self.residual = residual
        self.output_activation = output_activation
        self.encoder = encoder
        self.rescale = rescale
        self.input_channels = None

    def _check_input_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                "`UNet` expects channels-last images of shape "
                "(batch, height, width, channels). "
                f"Received: input shape {shape}"
            )
        if shape[-1] is None:
            raise ValueError(
                "`UNet` needs a known number of input channels, e.g. "
                f"(None, None, None, 3). Received: input shape {shape}"
            )
        if self.input_channels is not None and shape[-1] != self.input_channels:
            raise ValueError(
                f"This `UNet` was built for {self.input_channels} input "
                f"channels. Received: input shape {shape} with {shape[-1]} "
                "channels. Convert the images (e.g. grayscale to RGB) or build "
                f"a new model for {shape[-1]} channels."
            )
        minimum = 2**self.depth
        too_small = [size for size in shape[1:3] if size is not None and size < minimum]
        if too_small:
            raise ValueError(
                f"`UNet` with depth={self.depth} halves the input {self.depth} "
                f"times, so height and width must be at least {minimum}. "
                f"Received: input shape {shape}. Resize or pad the images to at "
                f"least ({minimum}, {minimum}), or use a smaller `depth`."
            )
        return shape

    def build(self, input_shape):
        shape = self._check_input_shape(input_shape)
        self.input_channels = shape[-1]
        skips = []
        for block in self.encoder_blocks:
            block.build(shape)
            shape, skip = block.compute_output_shape(shape)
            skips.append(skip)
        self.bottleneck.build(shape)
        shape = self.bottleneck.compute_output_shape(shape)
        for block, skip in zip(self.decoder_blocks, reversed(skips)):
            block.build([shape, skip])
            shape = block.compute_output_shape([shape, skip])
        self.head.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        self._check_input_shape(inputs.shape)
        x = inputs
        if self.rescaling is not None:
            x = self.rescaling(x)
        skips = []
        for block in self.encoder_blocks:
            x, skip = block(x, training=training)
            skips.append(skip)
        x = self.bottleneck(x, training=training)
        for block, skip in zip(self.decoder_blocks, reversed(skips)):
            x = block([x, skip], training=training)
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
                "encoder": self.encoder,
                "rescale": self.rescale,
            }
        )
        return config
