import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import check_bool, check_choice, check_spatial_dims
from seglayers.layers._block_args import conv_block_config
from seglayers.layers._spatial import (
    LAYERS,
    check_input_shape,
    input_spec,
    match_spatial_size,
    upsample_bilinear_2x,
)
from seglayers.layers.attention_gate import AttentionGate
from seglayers.layers.conv_block import ConvBlock

UPSAMPLINGS = ("transpose", "bilinear", "nearest")


class _BilinearUpSampling2D(keras.layers.UpSampling2D):
    """`UpSampling2D(2, interpolation="bilinear")` that works at sizes known
    only at run time (see `upsample_bilinear_2x`). Weightless, and built by
    `DecoderBlock` itself, so saved files are unchanged."""

    def call(self, inputs):
        return upsample_bilinear_2x(inputs)


class _TrilinearUpSampling3D(keras.layers.UpSampling3D):
    """`UpSampling3D(2)` that interpolates linearly along each axis, which
    Keras's (nearest only) cannot; weightless like its 2-D sibling."""

    def call(self, inputs):
        return upsample_bilinear_2x(inputs)


@register
class DecoderBlock(keras.layers.Layer):
    """2× upsampling, skip concatenation and a `ConvBlock`: one level of an
    expanding path.

    The upsampled features are matched to the skip's spatial size before
    the concatenation (cropped, or zero-padded at the far end of each axis,
    the bottom and right in 2-D), so a
    skip one pixel larger, as an odd input size gives, is reconciled instead
    of failing in `Concatenate`. Sizes a whole level apart (`[skip, x]`
    swapped, or features of another stride) raise a `ValueError`.

    Args:
        filters: int, the number of output channels.
        num_convs: int, convolutions after the concatenation. Defaults to 2.
        normalization: `"batch"`, `"group"`, `"instance"`, `"layer"` or
            `None`, as in `ConvBlock`. Defaults to `"batch"`.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout rate after the convolutions.
            Defaults to 0.
        residual: bool, whether the convolutions have a residual shortcut.
            Defaults to `False`.
        kernel_size: int, the convolution kernel size. Defaults to 3.
        upsampling: `"transpose"` (a learned 2×2 transposed convolution to
            `filters` channels, the paper's "up-convolution"), `"bilinear"` or
            `"nearest"` (parameter-free resizes that keep the channels;
            `"bilinear"` is trilinear in 3-D). Defaults to `"transpose"`.
        attention: bool, whether an `AttentionGate` weighs the skip, gated by
            the upsampled features. Defaults to `False`.
        spatial_dims: 2 for images, 3 for volumes
            `(batch, depth, height, width, channels)`, where every spatial
            axis is upsampled. Defaults to 2.
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a list `[x, skip]`: the coarse features
            `(batch, h, w, channels)` and the skip
            `(batch, about 2h, about 2w, skip_channels)`; or `x` alone for a
            level without a skip (upsampling and convolutions only, as
            decoders over encoders without stride-2 features need; not with
            `attention`). With `spatial_dims=3` each has a depth axis after
            the batch one.
        training: bool, whether normalization and dropout run in training mode.

    Output shape:
        `(batch, skip_height, skip_width, filters)`, or
        `(batch, 2h, 2w, filters)` without a skip.

    Example:

    >>> block = DecoderBlock(8, attention=True)
    >>> x, skip = keras.ops.ones((2, 7, 7, 16)), keras.ops.ones((2, 15, 15, 8))
    >>> tuple(block([x, skip]).shape)
    (2, 15, 15, 8)
    """

    def __init__(
        self,
        filters,
        num_convs=2,
        normalization="batch",
        activation="relu",
        dropout=0.0,
        residual=False,
        kernel_size=3,
        upsampling="transpose",
        attention=False,
        spatial_dims=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("upsampling", upsampling, UPSAMPLINGS)
        attention = check_bool("attention", attention)
        spatial_dims = check_spatial_dims(spatial_dims)
        layers = LAYERS[spatial_dims]

        # === Layers ===
        self.conv_block = ConvBlock(
            filters,
            num_convs=num_convs,
            normalization=normalization,
            activation=activation,
            dropout=dropout,
            residual=residual,
            kernel_size=kernel_size,
            spatial_dims=spatial_dims,
            dtype=self.dtype_policy,
            name="conv_block",
        )
        if upsampling == "transpose":
            self.upsample = layers.conv_transpose(
                filters,
                2,
                strides=2,
                kernel_initializer="he_normal",
                dtype=self.dtype_policy,
                name="upsample",
            )
        elif spatial_dims == 3:
            # Keras's UpSampling3D only repeats (nearest).
            trilinear = upsampling == "bilinear"
            upsample = _TrilinearUpSampling3D if trilinear else layers.upsampling
            self.upsample = upsample(2, dtype=self.dtype_policy, name="upsample")
        elif upsampling == "bilinear":
            self.upsample = _BilinearUpSampling2D(
                2, interpolation="bilinear", dtype=self.dtype_policy, name="upsample"
            )
        else:
            self.upsample = layers.upsampling(
                2, interpolation=upsampling, dtype=self.dtype_policy, name="upsample"
            )
        self.attention_gate = None
        if attention:
            self.attention_gate = AttentionGate(
                max(filters // 2, 1),
                spatial_dims=spatial_dims,
                dtype=self.dtype_policy,
                name="attention_gate",
            )

        # === Config === (numbers as the conv block checked them: numpy ones too)
        self.filters = self.conv_block.filters
        self.num_convs = self.conv_block.num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = self.conv_block.dropout
        self.residual = bool(residual)
        self.kernel_size = self.conv_block.kernel_size
        self.upsampling = upsampling
        self.attention = attention
        self.spatial_dims = spatial_dims

    def _shapes(self, input_shape):
        """Checks the input shapes; returns (x, upsampled x, skip) shapes,
        the skip's `None` when there is none."""
        if not isinstance(input_shape, (list, tuple)) or not input_shape:
            raise ValueError(
                "`DecoderBlock` expects a list of two inputs `[x, skip]`, or "
                f"`x` alone. Received: input_shape={input_shape}"
            )
        if not isinstance(input_shape[0], (list, tuple)):
            x_shape, skip_shape = tuple(input_shape), None
        elif len(input_shape) == 2 and input_shape[1] is None:
            raise ValueError(
                "`DecoderBlock` got `[x, None]`: call it on `[x, skip]`, or on "
                f"`x` alone for no skip. Received: input_shape={input_shape}"
            )
        elif len(input_shape) == 2:
            x_shape, skip_shape = input_shape
            skip_shape = check_input_shape(self, skip_shape)
        else:
            raise ValueError(
                "`DecoderBlock` expects a list of two inputs `[x, skip]`, or "
                f"`x` alone. Received: input_shape={input_shape}"
            )
        x_shape = check_input_shape(self, x_shape)
        up_shape = tuple(self.upsample.compute_output_shape(x_shape))
        if skip_shape is None:
            if self.attention_gate is not None:
                raise ValueError(
                    "A `DecoderBlock` with `attention=True` gates a skip, so it "
                    "needs inputs `[x, skip]`; without a skip use "
                    f"attention=False. Received: input_shape={input_shape}"
                )
            return x_shape, up_shape, None
        self._check_sizes(up_shape, skip_shape, input_shape)
        return x_shape, skip_shape[:-1] + up_shape[-1:], skip_shape

    def _check_sizes(self, up_shape, skip_shape, input_shape):
        """The upsampled `x` is cropped or padded to the skip: by a pixel for
        sizes the pooling halved with a floor, never by a whole level (inputs
        swapped, or features of the wrong stride), which kept 1/4 of `x`."""
        up_shape, skip_shape = tuple(up_shape), tuple(skip_shape)
        batches = up_shape[0], skip_shape[0]
        if all(isinstance(b, int) for b in batches) and batches[0] != batches[1]:
            raise ValueError(
                f"`DecoderBlock` {self.name!r} needs `x` and the skip of the same "
                f"batch size; `x` has {batches[0]}, the skip {batches[1]}. "
                f"Received: input_shape={input_shape}"
            )
        for up, skip in zip(up_shape[1:-1], skip_shape[1:-1]):
            # Unknown (None, or JAX's symbolic sizes in an export) or close.
            if (
                not isinstance(up, int)
                or not isinstance(skip, int)
                or abs(up - skip) <= 1
            ):
                continue
            if up >= 1.5 * skip or skip >= 1.5 * up:
                raise ValueError(
                    f"`DecoderBlock` {self.name!r}: `x` upsampled is "
                    f"{up_shape[1:-1]} but the skip is {skip_shape[1:-1]}. The "
                    "inputs are `[x, skip]`: `x` the deeper features, at half "
                    "the skip's size (`EncoderBlock` returns `(down, skip)`). "
                    f"Received: input_shape={input_shape}"
                )

    def build(self, input_shape):
        x_shape, up_shape, skip_shape = self._shapes(input_shape)
        spec = input_spec(self.spatial_dims)
        self.input_spec = spec if skip_shape is None else [spec, spec]
        if self.upsampling == "transpose":
            self.upsample.build(x_shape)
        if skip_shape is None:
            self.conv_block.build(up_shape)
            return
        if self.attention_gate is not None:
            self.attention_gate.build([skip_shape, up_shape])
        self.conv_block.build(skip_shape[:-1] + (up_shape[-1] + skip_shape[-1],))

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)):
            return self.conv_block(self.upsample(inputs), training=training)
        x, skip = inputs
        up = self.upsample(x)
        # Checked at build too; a block built on free sizes meets them here.
        shapes = [tuple(x.shape), tuple(skip.shape)]
        self._check_sizes(up.shape, skip.shape, shapes)
        x = match_spatial_size(up, skip)
        if self.attention_gate is not None:
            skip = self.attention_gate([skip, x])
        x = ops.concatenate([x, skip], axis=-1)
        return self.conv_block(x, training=training)

    def compute_output_shape(self, input_shape):
        _, up_shape, _ = self._shapes(input_shape)
        return up_shape[:-1] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(conv_block_config(self))
        config.update(
            {
                "upsampling": self.upsampling,
                "attention": self.attention,
                "spatial_dims": self.spatial_dims,
            }
        )
        return config
