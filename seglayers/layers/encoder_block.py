import keras

from seglayers._api import register
from seglayers._validation import check_choice, check_spatial_dims
from seglayers.layers._block_args import conv_block_config
from seglayers.layers._spatial import LAYERS, check_input_shape, input_spec
from seglayers.layers.conv_block import ConvBlock

POOLINGS = ("max", "average")


@register
class EncoderBlock(keras.layers.Layer):
    """A `ConvBlock` followed by 2× downsampling: one level of a contracting path.

    Returns both the downsampled features, for the next level, and the
    full-resolution features, for the skip connection to the matching
    `DecoderBlock`.

    Args:
        filters: int, the number of output channels.
        num_convs: int, convolutions in the block. Defaults to 2.
        normalization: `"batch"`, `"group"`, `"instance"`, `"layer"` or
            `None`, as in `ConvBlock`. Defaults to `"batch"`.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout rate after the convolutions.
            Defaults to 0.
        residual: bool, whether the convolutions have a residual shortcut.
            Defaults to `False`.
        kernel_size: int, the convolution kernel size. Defaults to 3.
        pooling: `"max"` (the paper's 2×2 max pooling) or `"average"`.
            Defaults to `"max"`.
        spatial_dims: 2 for images, 3 for volumes
            `(batch, depth, height, width, channels)`. Defaults to 2.
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor, or
            `(batch, depth, height, width, channels)` with `spatial_dims=3`.
        training: bool, whether normalization and dropout run in training mode.

    Returns:
        A tuple `(downsampled, skip)` of shapes
        `(batch, height // 2, width // 2, filters)` and
        `(batch, height, width, filters)` (every spatial axis halved in 3-D).

    Example:

    >>> down, skip = EncoderBlock(8)(keras.ops.ones((2, 32, 32, 3)))
    >>> tuple(down.shape), tuple(skip.shape)
    ((2, 16, 16, 8), (2, 32, 32, 8))
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
        pooling="max",
        spatial_dims=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("pooling", pooling, POOLINGS)
        spatial_dims = check_spatial_dims(spatial_dims)

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
        layers = LAYERS[spatial_dims]
        pool = layers.max_pooling if pooling == "max" else layers.average_pooling
        self.pool = pool(2, dtype=self.dtype_policy, name="pool")

        # === Config === (numbers as the conv block checked them: numpy ones too)
        self.filters = self.conv_block.filters
        self.num_convs = self.conv_block.num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = self.conv_block.dropout
        self.residual = bool(residual)
        self.kernel_size = self.conv_block.kernel_size
        self.pooling = pooling
        self.spatial_dims = spatial_dims

    def build(self, input_shape):
        input_shape = check_input_shape(self, input_shape)
        _check_poolable(input_shape)
        self.input_spec = input_spec(self.spatial_dims)
        self.conv_block.build(input_shape)

    def call(self, inputs, training=None):
        _check_poolable(inputs.shape)
        skip = self.conv_block(inputs, training=training)
        return self.pool(skip), skip

    def compute_output_shape(self, input_shape):
        skip = self.conv_block.compute_output_shape(input_shape)
        return tuple(self.pool.compute_output_shape(skip)), skip

    def get_config(self):
        config = super().get_config()
        config.update(conv_block_config(self))
        config["pooling"] = self.pooling
        config["spatial_dims"] = self.spatial_dims
        return config


def _check_poolable(shape):
    """Refuses a spatial axis of 1: the pooling would halve it to 0 (an
    empty tensor on JAX, a oneDNN abort on TensorFlow)."""
    # Ints only: a shape-polymorphic export (JAX) traces symbolic sizes.
    if any(isinstance(size, int) and size < 2 for size in tuple(shape)[1:-1]):
        raise ValueError(
            "`EncoderBlock` halves every spatial axis with its pooling, so "
            "each needs at least 2 pixels; pad or resize the input, or use "
            f"fewer blocks. Received: input shape {tuple(shape)}"
        )
