import keras

from seglayers._api import register
from seglayers._validation import (
    check_activation,
    check_bool,
    check_choice,
    check_positive_int,
    check_rate,
    check_spatial_dims,
)
from seglayers.layers._block_args import conv_block_config
from seglayers.layers._normalization import NORMALIZATIONS, make_normalization
from seglayers.layers._spatial import LAYERS, check_input_shape, input_spec


@register
class ConvBlock(keras.layers.Layer):
    """`num_convs` × (convolution → normalization → activation).

    The basic unit of the U-Net: "two 3x3 convolutions (unpadded), each
    followed by a rectified linear unit" in Ronneberger et al. (2015), here
    with same padding so the spatial size is kept. Convolutions use He-normal
    initialization, as in the paper, and no bias when a normalization follows.

    Args:
        filters: int, the number of output channels.
        num_convs: int, how many convolutions the block stacks. Defaults to 2.
        normalization: one of `"batch"`, `"group"` (up to 32 groups),
            `"instance"` (each sample and channel over its own spatial axes,
            for the small batches of volumes), `"layer"` (over channels) or
            `None`. Defaults to `"batch"`.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        dropout: float in [0, 1), the rate of a dropout after the block.
            Defaults to 0 (none).
        residual: bool, whether to add a 1×1-convolution shortcut from the
            input to the output before the last activation (as in ResNet and
            residual U-Nets). Defaults to `False`.
        kernel_size: int, the size of the square (cubic in 3-D) kernels.
            Defaults to 3.
        spatial_dims: 2 for images, 3 for volumes
            `(batch, depth, height, width, channels)`. Defaults to 2.
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor, or
            `(batch, depth, height, width, channels)` with `spatial_dims=3`.
        training: bool, whether normalization and dropout run in training mode.

    Input shape:
        `(batch, *spatial, channels)`, with `spatial_dims` spatial axes.

    Output shape:
        `(batch, *spatial, filters)`.

    Example:

    >>> block = ConvBlock(8, normalization="group", residual=True)
    >>> tuple(block(keras.ops.ones((2, 16, 16, 3))).shape)
    (2, 16, 16, 8)
    >>> volumes = ConvBlock(8, spatial_dims=3)
    >>> tuple(volumes(keras.ops.ones((2, 8, 16, 16, 1))).shape)
    (2, 8, 16, 16, 8)
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
        spatial_dims=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = check_positive_int("filters", filters)
        num_convs = check_positive_int("num_convs", num_convs)
        check_choice("normalization", normalization, NORMALIZATIONS)
        check_activation("activation", activation)
        dropout = check_rate("dropout", dropout)
        residual = check_bool("residual", residual)
        kernel_size = check_positive_int("kernel_size", kernel_size)
        spatial_dims = check_spatial_dims(spatial_dims)
        conv = LAYERS[spatial_dims].conv

        # === Layers ===
        self.convs = []
        self.norms = []
        self.activations = []
        for i in range(num_convs):
            self.convs.append(
                conv(
                    filters,
                    kernel_size,
                    padding="same",
                    use_bias=normalization is None,
                    kernel_initializer="he_normal",
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
            )
            self.norms.append(
                make_normalization(
                    normalization, filters, f"norm_{i}", self.dtype_policy
                )
            )
            self.activations.append(
                keras.layers.Activation(
                    activation, dtype=self.dtype_policy, name=f"activation_{i}"
                )
            )
        self.shortcut = None
        if residual:
            self.shortcut = conv(
                filters,
                1,
                kernel_initializer="he_normal",
                dtype=self.dtype_policy,
                name="shortcut",
            )
        self.dropout_layer = None
        if dropout:
            self.dropout_layer = keras.layers.Dropout(
                dropout, dtype=self.dtype_policy, name="dropout"
            )

        # === Config ===
        self.filters = filters
        self.num_convs = num_convs
        self.normalization = normalization
        self.activation = activation
        self.dropout = dropout
        self.residual = residual
        self.kernel_size = kernel_size
        self.spatial_dims = spatial_dims

    def build(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self.input_spec = input_spec(self.spatial_dims)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
            if norm is not None:
                norm.build(shape)
        if self.shortcut is not None:
            self.shortcut.build(tuple(input_shape))

    def call(self, inputs, training=None):
        x = inputs
        last = self.num_convs - 1
        for i, (conv, norm, activation) in enumerate(
            zip(self.convs, self.norms, self.activations)
        ):
            x = conv(x)
            if norm is not None:
                x = norm(x, training=training)
            if i == last and self.shortcut is not None:
                x = x + self.shortcut(inputs)
            x = activation(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(conv_block_config(self))
        config["spatial_dims"] = self.spatial_dims
        return config
