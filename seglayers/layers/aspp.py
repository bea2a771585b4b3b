import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import (
    check_activation,
    check_bool,
    check_dilation_rates,
    check_positive_int,
    check_rate,
    check_spatial_dims,
)
from seglayers.layers._normalization import make_normalization
from seglayers.layers._spatial import (
    LAYERS,
    atrous_conv,
    check_input_shape,
    input_spec,
)


@register
class ASPP(keras.layers.Layer):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabV3; 2018,
    DeepLabV3+): the same features seen at several fields of view at once.

    Parallel branches, each convolution → batch normalization → activation
    with `filters` outputs: a 1×1 convolution, one 3×3 convolution dilated by
    each of `dilation_rates`, and image pooling (the global average, a 1×1
    convolution, then broadcast back to every position, for any size known
    only at run time). Their concatenation is projected by a 1×1 convolution
    → batch normalization → activation → dropout. Convolutions have no bias
    (a normalization follows).

    With `separable=True` the atrous convolutions are depthwise-separable,
    as in DeepLabV3+ and segmentation_models.pytorch's `DeepLabV3Plus`
    (whose ASPP this then matches parameter for parameter); `False` is
    DeepLabV3's (and keras-hub's `SpatialPyramidPooling`) plain ASPP.
    The dropout defaults to 0.5 as in torchvision's and
    segmentation_models.pytorch's ASPP (keras-hub's defaults to none).

    Args:
        filters: int, the channels of every branch and of the output.
            Defaults to 256.
        dilation_rates: list of ints, one atrous branch per rate. Defaults to
            `[6, 12, 18]`, the paper's rates for features at stride 16;
            double them for stride 8.
        separable: bool, whether the atrous convolutions are
            depthwise-separable (2-D only). Defaults to `False`.
        dropout: float in [0, 1), the rate of the dropout after the
            projection. Defaults to 0.5.
        activation: str, the name of a Keras activation. Defaults to `"relu"`.
        spatial_dims: 2 for images, 3 for volumes. Defaults to 2.
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

    >>> aspp = ASPP(8, dilation_rates=[2, 4])
    >>> tuple(aspp(keras.ops.ones((2, 16, 16, 3))).shape)
    (2, 16, 16, 8)
    """

    def __init__(
        self,
        filters=256,
        dilation_rates=(6, 12, 18),
        separable=False,
        dropout=0.5,
        activation="relu",
        spatial_dims=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = check_positive_int("filters", filters)
        rates = check_dilation_rates(dilation_rates)
        separable = check_bool("separable", separable)
        dropout = check_rate("dropout", dropout)
        check_activation("activation", activation)
        spatial_dims = check_spatial_dims(spatial_dims)
        if separable and spatial_dims != 2:
            raise ValueError(
                "`separable=True` needs spatial_dims=2: Keras has no 3-D "
                "depthwise convolution. Pass separable=False for volumes. "
                f"Received: separable={separable}, spatial_dims={spatial_dims}"
            )
        conv = LAYERS[spatial_dims].conv
        dtype = self.dtype_policy

        # === Layers ===
        # Branches: the 1x1 convolution, then one per rate (their order is
        # the order of the concatenated channels), then image pooling.
        self.branch_convs = [
            conv(filters, 1, use_bias=False, dtype=dtype, name="conv_1x1")
        ] + [
            atrous_conv(
                filters, 3, rate, separable, f"atrous_conv_{i}", dtype, spatial_dims
            )
            for i, rate in enumerate(rates)
        ]
        self.branch_norms = [
            make_normalization("batch", filters, f"norm_{i}", dtype)
            for i in range(len(self.branch_convs))
        ]
        self.pooling_conv = conv(
            filters, 1, use_bias=False, dtype=dtype, name="pooling_conv"
        )
        self.pooling_norm = make_normalization("batch", filters, "pooling_norm", dtype)
        self.projection = conv(
            filters, 1, use_bias=False, dtype=dtype, name="projection"
        )
        self.projection_norm = make_normalization(
            "batch", filters, "projection_norm", dtype
        )
        self.activation_layer = keras.layers.Activation(
            activation, dtype=dtype, name="activation"
        )
        self.dropout_layer = None
        if dropout:
            self.dropout_layer = keras.layers.Dropout(
                dropout, dtype=dtype, name="dropout"
            )

        # === Config ===
        self.filters = filters
        self.dilation_rates = rates
        self.separable = separable
        self.dropout = dropout
        self.activation = activation
        self.spatial_dims = spatial_dims

    def build(self, input_shape):
        shape = check_input_shape(self, input_shape)
        self.input_spec = input_spec(self.spatial_dims)
        output_shape = shape[:-1] + (self.filters,)
        for conv, norm in zip(self.branch_convs, self.branch_norms):
            conv.build(shape)
            norm.build(output_shape)
        pooled = (shape[0],) + (1,) * self.spatial_dims + (shape[-1],)
        self.pooling_conv.build(pooled)
        self.pooling_norm.build(pooled[:-1] + (self.filters,))
        branches = len(self.branch_convs) + 1
        self.projection.build(shape[:-1] + (branches * self.filters,))
        self.projection_norm.build(output_shape)

    def call(self, inputs, training=None):
        branches = [
            self.activation_layer(norm(conv(inputs), training=training))
            for conv, norm in zip(self.branch_convs, self.branch_norms)
        ]
        spatial_axes = tuple(range(1, self.spatial_dims + 1))
        pooled = ops.mean(inputs, axis=spatial_axes, keepdims=True)
        pooled = self.pooling_norm(self.pooling_conv(pooled), training=training)
        pooled = self.activation_layer(pooled)
        # Back to every position: bilinear upsampling of one pixel is that
        # pixel everywhere, so a broadcast (by a product with ones of the
        # input's size) is exact and needs no size known before run time.
        branches.append(pooled * ops.ones_like(branches[0][..., :1]))
        x = ops.concatenate(branches, axis=-1)
        x = self.projection_norm(self.projection(x), training=training)
        x = self.activation_layer(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "dilation_rates": list(self.dilation_rates),
                "separable": self.separable,
                "dropout": self.dropout,
                "activation": self.activation,
                "spatial_dims": self.spatial_dims,
            }
        )
        return config
