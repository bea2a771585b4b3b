import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import check_bool, check_choice
from seglayers.layers.attention_gate import AttentionGate
from seglayers.layers.conv_block import ConvBlock, check_image_shape
from seglayers.layers.encoder_block import conv_block_config

UPSAMPLINGS = ("transpose", "bilinear", "nearest")


def match_spatial_size(x, reference):
    """Crops or zero-pads `x` at the bottom and right to the height and width
    of `reference`.

    An input whose size the depth cannot divide (say 250 at depth 4) pools
    down with floors, so the upsampled features come back one pixel short of
    the skip (30 against 31). Padding at the far edge keeps every feature in
    place, as same padding does, where a resize would shift them all.
    """
    x_size, ref_size = tuple(x.shape[1:3]), tuple(reference.shape[1:3])
    if None not in x_size + ref_size:
        # Static sizes (always under JAX): plain Python, nothing when equal.
        if x_size == ref_size:
            return x
        height, width = ref_size
        x = x[:, :height, :width, :]
        pad_h, pad_w = height - x.shape[1], width - x.shape[2]
    else:
        # Sizes known only at run time (TensorFlow graphs with None dims).
        ref_shape = ops.shape(reference)
        height, width = ref_shape[1], ref_shape[2]
        x = x[:, :height, :width, :]
        x_shape = ops.shape(x)
        pad_h, pad_w = height - x_shape[1], width - x_shape[2]
        x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # TensorFlow's Pad with paddings known only at run time forgets every
        # static dimension, the channels too. The graph still runs, but the
        # TFLite converter then cannot lower the next Conv2D to a built-in op
        # ("'tf.Conv2D' op is neither a custom op nor a flex op"). A reshape
        # to the same shape states the channel count again.
        channels = x_shape[3]
        if isinstance(channels, int):
            x = ops.reshape(x, (x_shape[0], height, width, channels))
        return x
    return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def _previous(x, axis):
    """`x` moved one step forward along `axis`: at each index the previous
    row or column, the first one repeated.

    Concatenated and then sliced at `x`'s own size, so the size stays
    plainly `x`'s, also as a symbolic size in JAX's shape-polymorphic export.
    """
    head = (slice(None),) * axis
    size = ops.shape(x)[axis]
    edge = x[head + (slice(0, 1),)]
    return ops.concatenate([edge, x], axis)[head + (slice(0, size),)]


def _next(x, axis):
    """At each index the next row or column along `axis`, the last repeated.
    (Flipped, as a slice ending at the last row has a start JAX cannot
    resolve for symbolic sizes.)"""
    return ops.flip(_previous(ops.flip(x, axis), axis), axis)


def upsample_bilinear_2x(x):
    """2× bilinear upsampling of channels-last `x`, as `keras.ops.image.resize`
    with `interpolation="bilinear"` computes it (half-pixel centres, edges
    clamped), for sizes known only at run time too.

    Works around Keras 3.15.1: `ops.image.resize` checks `size[0] <= 0` as a
    Python bool (keras/src/ops/image.py), so a size known only at run time,
    a tensor in a TensorFlow graph, raises `OperatorNotAllowedInGraphError`.
    `UpSampling2D(interpolation="bilinear")` computes its size from
    `ops.shape`, and `predict` retraces with unknown height and width the
    second time it sees a new size, so it fails there. At a factor of 2
    every output pixel is 3/4 of its own input pixel and 1/4 of the
    neighbour on its side, which plain `keras.ops` express at any size.
    """
    for axis in (1, 2):
        near = 0.75 * x
        before = near + 0.25 * _previous(x, axis)
        after = near + 0.25 * _next(x, axis)
        # Interleave: output row 2i is `before[i]`, row 2i + 1 `after[i]`.
        x = ops.stack([before, after], axis=axis + 1)
        shape = ops.shape(x)
        merged = shape[:axis] + (shape[axis] * 2,) + shape[axis + 2 :]
        x = ops.reshape(x, merged)
    return x


class _BilinearUpSampling2D(keras.layers.UpSampling2D):
    """`UpSampling2D(2, interpolation="bilinear")` that works at sizes known
    only at run time (see `upsample_bilinear_2x`). Weightless, and built by
    `DecoderBlock` itself, so saved files are unchanged."""

    def call(self, inputs):
        return upsample_bilinear_2x(inputs)


@register
class DecoderBlock(keras.layers.Layer):
    """2× upsampling, skip concatenation and a `ConvBlock`: one level of an
    expanding path.

    The upsampled features are matched to the skip's height and width before
    the concatenation (cropped, or zero-padded at the bottom and right), so a
    skip one pixel larger, as an odd input size gives, is reconciled instead
    of failing in `Concatenate`.

    Args:
        filters: int, the number of output channels.
        num_convs: int, convolutions after the concatenation. Defaults to 2.
        normalization: `"batch"`, `"group"`, `"layer"` or `None`.
            Defaults to `"batch"`.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout rate after the convolutions.
            Defaults to 0.
        residual: bool, whether the convolutions have a residual shortcut.
            Defaults to `False`.
        kernel_size: int, the convolution kernel size. Defaults to 3.
        upsampling: `"transpose"` (a learned 2×2 transposed convolution to
            `filters` channels, the paper's "up-convolution"), `"bilinear"` or
            `"nearest"` (parameter-free resizes that keep the channels).
            Defaults to `"transpose"`.
        attention: bool, whether an `AttentionGate` weighs the skip, gated by
            the upsampled features. Defaults to `False`.
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a list `[x, skip]`: the coarse features
            `(batch, h, w, channels)` and the skip
            `(batch, about 2h, about 2w, skip_channels)`; or `x` alone for a
            level without a skip (upsampling and convolutions only, as
            decoders over encoders without stride-2 features need; not with
            `attention`).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("upsampling", upsampling, UPSAMPLINGS)
        check_bool("attention", attention)

        # === Layers ===
        self.conv_block = ConvBlock(
            filters,
            num_convs=num_convs,
            normalization=normalization,
            activation=activation,
            dropout=dropout,
            residual=residual,
            kernel_size=kernel_size,
            dtype=self.dtype_policy,
            name="conv_block",
        )
        if upsampling == "transpose":
            self.upsample = keras.layers.Conv2DTranspose(
                filters,
                2,
                strides=2,
                kernel_initializer="he_normal",
                dtype=self.dtype_policy,
                name="upsample",
            )
        elif upsampling == "bilinear":
            self.upsample = _BilinearUpSampling2D(
                2, interpolation="bilinear", dtype=self.dtype_policy, name="upsample"
            )
        else:
            self.upsample = keras.layers.UpSampling2D(
                2, interpolation=upsampling, dtype=self.dtype_policy, name="upsample"
            )
        self.attention_gate = None
        if attention:
            self.attention_gate = AttentionGate(
                max(filters // 2, 1), dtype=self.dtype_policy, name="attention_gate"
            )

        # === Config ===
        self.filters = filters
        self.num_convs = num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.residual = residual
        self.kernel_size = kernel_size
        self.upsampling = upsampling
        self.attention = attention

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
        elif len(input_shape) == 2:
            x_shape, skip_shape = (tuple(s) for s in input_shape)
            check_image_shape(self, skip_shape)
        else:
            raise ValueError(
                "`DecoderBlock` expects a list of two inputs `[x, skip]`, or "
                f"`x` alone. Received: input_shape={input_shape}"
            )
        check_image_shape(self, x_shape)
        up_shape = tuple(self.upsample.compute_output_shape(x_shape))
        if skip_shape is None:
            if self.attention_gate is not None:
                raise ValueError(
                    "A `DecoderBlock` with `attention=True` gates a skip, so it "
                    "needs inputs `[x, skip]`; without a skip use "
                    f"attention=False. Received: input_shape={input_shape}"
                )
            return x_shape, up_shape, None
        return x_shape, skip_shape[:3] + up_shape[3:], skip_shape

    def build(self, input_shape):
        x_shape, up_shape, skip_shape = self._shapes(input_shape)
        if isinstance(self.upsample, keras.layers.Conv2DTranspose):
            self.upsample.build(x_shape)
        if skip_shape is None:
            self.conv_block.build(up_shape)
            return
        if self.attention_gate is not None:
            self.attention_gate.build([skip_shape, up_shape])
        self.conv_block.build(skip_shape[:3] + (up_shape[3] + skip_shape[3],))

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)):
            return self.conv_block(self.upsample(inputs), training=training)
        x, skip = inputs
        x = match_spatial_size(self.upsample(x), skip)
        if self.attention_gate is not None:
            skip = self.attention_gate([skip, x])
        x = ops.concatenate([x, skip], axis=-1)
        return self.conv_block(x, training=training)

    def compute_output_shape(self, input_shape):
        _, up_shape, _ = self._shapes(input_shape)
        return up_shape[:3] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(conv_block_config(self))
        config.update({"upsampling": self.upsampling, "attention": self.attention})
        return config
