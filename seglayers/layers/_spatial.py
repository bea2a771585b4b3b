"""Spatial helpers shared by the blocks and the models, for 2-D and 3-D.

A block's rank is its `spatial_dims` argument (2 for images, 3 for
volumes): the Keras layer classes come from one table keyed by it, shapes
are read as `(batch, *spatial, channels)` (`[1:-1]` and `[-1]`), and the
helpers below loop over every spatial axis.
"""

import collections

import keras
from keras import ops

from seglayers.layers import _volume_conv

# The 3-D pooling dtypes a backend has no CPU kernel for (below).
_NO_POOLING_KERNEL = {"tensorflow": ("float16",), "torch": ("float16", "bfloat16")}


class _Float32Pooling:
    """Pools in float32 where a backend has no kernel for the dtype, then
    casts back.

    TensorFlow 2.21 has no float16 `MaxPool3D` or `AvgPool3D` kernel on CPU
    (tensorflow/tensorflow#7632, #14334; still so in 2.21): under
    `mixed_float16` a 3-D block there fails with "Could not find device for
    node MaxPool3D". PyTorch 2.13 on CPU has no float16 or bfloat16
    `avg_pool3d` ("avg_pool3d_out_frame" not implemented for 'Half'). A
    maximum is exact in either precision, an average in float32 at least as
    accurate. GPUs have the kernels, so there this costs two casts of a
    tensor the convolutions around it dwarf.
    `tests/layers/spatial_test.py` fails the day plain Keras works.
    """

    def call(self, inputs):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if dtype in _NO_POOLING_KERNEL.get(keras.backend.backend(), ()):
            return ops.cast(super().call(ops.cast(inputs, "float32")), dtype)
        return super().call(inputs)


class _MaxPooling3D(_Float32Pooling, keras.layers.MaxPooling3D):
    pass


class _AveragePooling3D(_Float32Pooling, keras.layers.AveragePooling3D):
    pass


# The Keras layers a block makes, by rank.
SpatialLayers = collections.namedtuple(
    "SpatialLayers",
    ["conv", "conv_transpose", "max_pooling", "average_pooling", "upsampling"],
)
LAYERS = {
    2: SpatialLayers(
        keras.layers.Conv2D,
        keras.layers.Conv2DTranspose,
        keras.layers.MaxPooling2D,
        keras.layers.AveragePooling2D,
        keras.layers.UpSampling2D,
    ),
    3: SpatialLayers(
        # Keras's, computed otherwise on JAX on a CPU (`_volume_conv`).
        _volume_conv.Conv3D,
        _volume_conv.Conv3DTranspose,
        _MaxPooling3D,
        _AveragePooling3D,
        keras.layers.UpSampling3D,
    ),
}

# How errors spell the input of each rank.
_KINDS = {2: "images", 3: "volumes"}
_LAYOUTS = {
    2: "(batch, height, width, channels)",
    3: "(batch, depth, height, width, channels)",
}
_SIZES = {2: "height and width", 3: "depth, height and width"}


def layout(spatial_dims):
    """The input layout `spatial_dims` sets, in words, for error messages."""
    return _LAYOUTS[spatial_dims]


def size_names(spatial_dims):
    """The spatial axes' names, e.g. "height and width", for messages."""
    return _SIZES[spatial_dims]


def check_input_shape(layer, input_shape):
    """`input_shape` as a tuple if it is `(batch, *spatial, channels)` for
    `layer.spatial_dims`, with the channels known; else a `ValueError` that
    names `spatial_dims` and the other rank's layout."""
    shape = tuple(input_shape)
    dims = layer.spatial_dims
    if len(shape) != dims + 2 or shape[-1] is None:
        other = 3 if dims == 2 else 2
        raise ValueError(
            f"`{type(layer).__name__}` expects channels-last {_KINDS[dims]} of "
            f"shape {_LAYOUTS[dims]} with a known number of channels, as "
            f"spatial_dims={dims} sets; for {_KINDS[other]} "
            f"{_LAYOUTS[other]} pass spatial_dims={other}. "
            f"Received: input_shape={shape}, spatial_dims={dims}"
        )
    return shape


def input_spec(spatial_dims):
    """A Keras `InputSpec` for `(batch, *spatial, channels)` inputs.

    Blocks set it in `build`, after `check_input_shape`: a first call with the
    wrong rank then gets the message above, and the spec guards later calls.
    """
    return keras.InputSpec(ndim=spatial_dims + 2)


def match_spatial_size(x, reference):
    """Crops or zero-pads `x` at the far end of every spatial axis (bottom
    and right in 2-D) to the spatial size of `reference`.

    An input whose size the depth cannot divide (say 250 at depth 4) pools
    down with floors, so the upsampled features come back one pixel short of
    the skip (30 against 31). Padding at the far edge keeps every feature in
    place, as same padding does, where a resize would shift them all.
    """
    x_size, ref_size = tuple(x.shape[1:-1]), tuple(reference.shape[1:-1])
    if None not in x_size + ref_size:
        # Static sizes (always under JAX): plain Python, nothing when equal.
        if x_size == ref_size:
            return x
        x = x[_crop(ref_size)]
        pads = [r - s for r, s in zip(ref_size, x.shape[1:-1])]
        return ops.pad(x, _far_end(pads))
    # Sizes known only at run time (TensorFlow graphs with None dims).
    size = tuple(ops.shape(reference)[1:-1])
    x = x[_crop(size)]
    x_shape = ops.shape(x)
    pads = [r - s for r, s in zip(size, x_shape[1:-1])]
    x = ops.pad(x, _far_end(pads))
    # TensorFlow's Pad with paddings known only at run time forgets every
    # static dimension, the channels too. The graph still runs, but the
    # TFLite converter then cannot lower the next Conv2D to a built-in op
    # ("'tf.Conv2D' op is neither a custom op nor a flex op"). A reshape
    # to the same shape states the channel count again.
    channels = x_shape[-1]
    if isinstance(channels, int):
        x = ops.reshape(x, (x_shape[0], *size, channels))
    return x


def _crop(size):
    """The index that keeps the first `size` entries of each spatial axis."""
    return (slice(None),) + tuple(slice(None, s) for s in size) + (slice(None),)


def _far_end(pads):
    """`ops.pad` widths adding `pads` at the far end of each spatial axis."""
    return [[0, 0]] + [[0, p] for p in pads] + [[0, 0]]


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
    """2× linear upsampling of channels-last `x` over every spatial axis:
    bilinear for images, trilinear for volumes. In 2-D it is what
    `keras.ops.image.resize` with `interpolation="bilinear"` computes
    (half-pixel centres, edges clamped), for sizes known only at run time too.

    Works around Keras 3.15.1: `ops.image.resize` checks `size[0] <= 0` as a
    Python bool (keras/src/ops/image.py), so a size known only at run time,
    a tensor in a TensorFlow graph, raises `OperatorNotAllowedInGraphError`.
    `UpSampling2D(interpolation="bilinear")` computes its size from
    `ops.shape`, and `predict` retraces with unknown height and width the
    second time it sees a new size, so it fails there (and `UpSampling3D`
    has no linear mode at all). At a factor of 2 every output pixel is 3/4
    of its own input pixel and 1/4 of the neighbour on its side, axis by
    axis (linear interpolation is separable), which plain `keras.ops`
    express at any size.
    """
    x = ops.convert_to_tensor(x)  # numpy times a torch tensor fails
    for axis in range(1, len(x.shape) - 1):
        near = 0.75 * x
        before = near + 0.25 * _previous(x, axis)
        after = near + 0.25 * _next(x, axis)
        # Interleave: output row 2i is `before[i]`, row 2i + 1 `after[i]`.
        x = ops.stack([before, after], axis=axis + 1)
        shape = ops.shape(x)
        merged = shape[:axis] + (shape[axis] * 2,) + shape[axis + 2 :]
        x = ops.reshape(x, merged)
    return x


def atrous_conv(filters, kernel_size, dilation_rate, separable, name, dtype, dims=2):
    """A bias-free (a batch normalization follows) "same" convolution:
    depthwise-separable (a depthwise then a pointwise convolution, as
    `keras.layers.SeparableConv2D`) or plain, dilated by `dilation_rate`."""
    if separable:
        return keras.layers.SeparableConv2D(
            filters,
            kernel_size,
            padding="same",
            dilation_rate=dilation_rate,
            use_bias=False,
            dtype=dtype,
            name=name,
        )
    return LAYERS[dims].conv(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        kernel_initializer="he_normal",
        dtype=dtype,
        name=name,
    )
