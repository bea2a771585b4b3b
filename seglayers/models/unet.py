from seglayers._api import register
from seglayers._validation import check_bool, check_positive_int, check_rate
from seglayers.layers._normalization import resolve_normalization
from seglayers.layers.decoder_block import DecoderBlock
from seglayers.models._checks import config_filters, level_filters
from seglayers.models._contracting_path import (
    make_encoder_side,
    run_contracting_path,
)
from seglayers.models.segmentation_model import SegmentationModel


@register
class UNet(SegmentationModel):
    """The U-Net of Ronneberger et al. (2015) for semantic segmentation.

    A `SegmentationModel`: the U-Net's contracting path (or a pluggable
    encoder) as the pyramid, the expanding path as the decoder.

    An encoder of `depth` `EncoderBlock`s (convolutions, then 2× pooling), a
    bottleneck `ConvBlock`, a decoder of `depth` `DecoderBlock`s (upsampling,
    concatenation with the encoder's skip, convolutions) and a 1×1
    convolution head with `num_classes` channels. Convolutions use same
    padding, so the output has the input's height and width.

    `UNet(num_classes=2, filters=64, depth=4, normalization=None,
    upsampling="transpose")` is the paper's network (23 convolutions,
    31,031,810 parameters) with same padding; the defaults add batch
    normalization, which trains faster and more reliably.

    `UNet(num_classes=3, filters=[64, 128, 256, 512], depth=3,
    normalization="batch", spatial_dims=3)` is the 3-D U-Net of Çiçek et al.
    (2016) on 3-channel volumes (22,405,827 parameters) but for two choices of
    the blocks: each level's first convolution has the level's full width
    (the paper's has half: 3 → 32 → 64 at the top) and each up-convolution
    goes to the level's width (the paper's keeps its channels, 512 → 512).
    The paper's 19,069,955 counts convolution kernels and biases only;
    with `normalization=None` this model has 22,397,379: +7,025,664 in the
    contracting path, -3,698,240 in the expanding path.

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
            bottleneck (with an `encoder`, whose deepest features are the
            bottom, the last is not used). Defaults to 64, or 16 with an
            `encoder` (a decoder of 256, 128, 64, 32 and 16 channels, as in
            segmentation_models).
        depth: int, the number of poolings (and of upsamplings). Defaults to
            4, or 5 with an `encoder` (its stride-32 features at the bottom).
        num_convs: int, convolutions per block. Defaults to 2.
        normalization: `"auto"`, `"batch"`, `"group"` (up to 32 groups),
            `"instance"` (each sample and channel over its own spatial axes),
            `"layer"` or `None`. Defaults to `"auto"`: `"batch"` for images;
            `"group"` for volumes (`spatial_dims=3`), whose batches of one
            or two make batch statistics noisy: instance normalization in
            levels of up to 32 channels, 2 or 4 channels per group deeper,
            where a volume is a few voxels across.
            `get_config()` keeps `"auto"`; the blocks hold what it stands for.
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
            default), `"imagenet"` (downloaded by `keras.applications` at
            construction) or the path of a weights file for that encoder.
            Saved models restore their own weights instead.
        encoder_trainable: bool, `False` freezes the encoder, which then
            also runs its batch normalization in inference mode, for
            fine-tuning the decoder first. Unfrozen later
            (`model.encoder.trainable = True`, then compile again), its
            weights train and its batch normalization stays in inference
            mode, as Keras's transfer-learning guide advises; a saved model
            keeps both. Defaults to `True`.
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
        spatial_dims: 2 for images, 3 for volumes `(batch, depth, height,
            width, channels)` (the 3-D U-Net of Çiçek et al. 2016, with the
            U-Net's own encoder; 3-D convolutions, pooling and upsampling,
            `"bilinear"` being trilinear). Defaults to 2.
        **kwargs: `keras.Model` keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor.
        training: bool, whether normalization and dropout run in training mode.

    Input shape:
        `(batch, height, width, channels)`, height and width at least
        `2**depth`; `(batch, depth, height, width, channels)` with
        `spatial_dims=3`.

    Output shape:
        The input's shape with `num_classes` channels.

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
        normalization="auto",
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
        spatial_dims=2,
        **kwargs,
    ):
        kwargs.setdefault("name", "unet")
        own_encoder = encoder is None
        resolved_depth = depth if depth is not None else (4 if own_encoder else 5)
        resolved_depth = check_positive_int("depth", resolved_depth)
        if not own_encoder and resolved_depth > 5:
            raise ValueError(
                "With an `encoder`, `depth` can be at most 5 (the features at "
                f"stride 32 are the deepest used). Received: depth={depth}"
            )
        super().__init__(
            num_classes,
            depth=resolved_depth,
            output_activation=output_activation,
            encoder=encoder,
            encoder_weights=encoder_weights,
            encoder_trainable=encoder_trainable,
            encoder_preprocessing=encoder_preprocessing,
            rescale=rescale,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        widths = level_filters(
            filters if filters is not None else (64 if own_encoder else 16),
            resolved_depth,
        )
        attention = check_bool("attention", attention)

        # === Layers ===
        block_args = dict(
            num_convs=num_convs,
            normalization=resolve_normalization(normalization, spatial_dims),
            activation=activation,
            residual=residual,
            spatial_dims=spatial_dims,
            dtype=self.dtype_policy,
        )
        dropout = check_rate("dropout", dropout)
        make_encoder_side(self, widths, dropout, block_args)
        if own_encoder:
            skip_levels = [f"P{level}" for level in range(resolved_depth)]
        else:
            # A pretrained-style encoder may lack some levels, e.g. stride 2.
            skip_levels = self.encoder_levels[:-1]
        # Bottom-up, so decoder_blocks[i] works at level depth - 1 - i: it
        # upsamples to that level, joins its skip ("P{level}", if any), and
        # brings the features to the level's width.
        self.decoder_blocks = [
            DecoderBlock(
                widths[level],
                upsampling=upsampling,
                attention=attention and f"P{level}" in skip_levels,
                name=f"decoder_{level}",
                **block_args,
            )
            for level in reversed(range(resolved_depth))
        ]
        self.make_head()

        # === Config ===
        self.filters = config_filters(filters, widths)
        self.num_convs = check_positive_int("num_convs", num_convs)
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.upsampling = upsampling
        self.attention = attention
        self.residual = bool(residual)

    def encode(self, x, training=None):
        if self.encoder is not None:
            return super().encode(x, training=training)
        return run_contracting_path(
            self.encoder_blocks, self.bottleneck, x, training=training
        )

    def decode(self, pyramid, training=None):
        x = pyramid[f"P{self.depth}"]
        if self.bottom_dropout is not None:
            x = self.bottom_dropout(x, training=training)
        for level, block in zip(reversed(range(self.depth)), self.decoder_blocks):
            skip = pyramid.get(f"P{level}")
            x = block(x if skip is None else [x, skip], training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "num_convs": self.num_convs,
                "normalization": self.normalization,
                "activation": self.activation,
                "dropout": self.dropout,
                "upsampling": self.upsampling,
                "attention": self.attention,
                "residual": self.residual,
            }
        )
        return config
