import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import check_positive_int, check_spatial_dims
from seglayers.layers._spatial import LAYERS, input_spec, layout, size_names


@register
class AttentionGate(keras.layers.Layer):
    """Additive attention gate for skip connections (Oktay et al., 2018).

    Weighs each pixel of the skip features `x` by a coefficient in (0, 1)
    computed from `x` and a gating signal `g` from the coarser decoder level:
    `x * sigmoid(psi(relu(W_x x + W_g g)))`, where `W_x`, `W_g` and `psi` are
    1×1 convolutions. The gate runs at the resolution of `x`, so `g` must
    already be upsampled to it (as `DecoderBlock` does).

    Args:
        filters: int, the channels of the intermediate representation
            (`F_int` in the paper); half the skip's channels is customary.
        spatial_dims: 2 for images, 3 for volumes
            `(batch, depth, height, width, channels)`. Defaults to 2.
        **kwargs: the base layer's keyword arguments, such as `name`, `dtype`.

    Call arguments:
        inputs: a list `[x, g]` of the skip features
            `(batch, height, width, channels_x)` and the gating signal
            `(batch, height, width, channels_g)` (with a depth axis after
            the batch one when `spatial_dims=3`).

    Output shape:
        The shape of `x`.

    Example:

    >>> gate = AttentionGate(4)
    >>> x, g = keras.ops.ones((2, 16, 16, 8)), keras.ops.ones((2, 16, 16, 16))
    >>> tuple(gate([x, g]).shape)
    (2, 16, 16, 8)
    """

    def __init__(self, filters, spatial_dims=2, **kwargs):
        super().__init__(**kwargs)
        filters = check_positive_int("filters", filters)
        spatial_dims = check_spatial_dims(spatial_dims)
        conv = LAYERS[spatial_dims].conv

        # === Layers ===
        self.theta_x = conv(
            filters, 1, use_bias=False, dtype=self.dtype_policy, name="theta_x"
        )
        self.phi_g = conv(filters, 1, dtype=self.dtype_policy, name="phi_g")
        self.psi = conv(1, 1, activation="sigmoid", dtype=self.dtype_policy, name="psi")

        # === Config ===
        self.filters = filters
        self.spatial_dims = spatial_dims

    def _check_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                "`AttentionGate` expects a list of two inputs `[x, g]`: the "
                "skip features and the gating signal. "
                f"Received: input_shape={input_shape}"
            )
        x_shape, g_shape = (tuple(s) for s in input_shape)
        rank = self.spatial_dims + 2
        if len(x_shape) != rank or len(g_shape) != rank:
            raise ValueError(
                f"`AttentionGate` expects `x` and `g` of rank {rank}, "
                f"{layout(self.spatial_dims)}, as "
                f"spatial_dims={self.spatial_dims} sets; pass spatial_dims=2 "
                "for images, 3 for volumes. "
                f"Received: input_shape={input_shape}, "
                f"spatial_dims={self.spatial_dims}"
            )
        if None in (x_shape[-1], g_shape[-1]):
            raise ValueError(
                "`AttentionGate` needs the channels of `x` and `g` (the last "
                "axis) to build its convolutions; give inputs of known "
                f"channels. Received: x shape {x_shape}, g shape {g_shape}"
            )
        for axis in range(rank - 1):
            sizes = x_shape[axis], g_shape[axis]
            # Unknown: None, or JAX's symbolic sizes in an export.
            if all(isinstance(s, int) for s in sizes) and sizes[0] != sizes[1]:
                # The batch too: one `g` was broadcast over every `x`.
                raise ValueError(
                    "`AttentionGate` needs `x` and `g` of the same batch size "
                    f"and at the same {size_names(self.spatial_dims)}; upsample "
                    "`g` to the size of `x` first. "
                    f"Received: x shape {x_shape}, g shape {g_shape}"
                )
        return x_shape, g_shape

    def build(self, input_shape):
        x_shape, g_shape = self._check_shapes(input_shape)
        self.input_spec = [input_spec(self.spatial_dims)] * 2
        self.theta_x.build(x_shape)
        self.phi_g.build(g_shape)
        self.psi.build(x_shape[:-1] + (self.filters,))

    def call(self, inputs):
        x, g = inputs
        # Checked at build too; a gate built on free sizes meets them here
        # (a `g` of one sample or one pixel was broadcast over `x`).
        self._check_shapes([x.shape, g.shape])
        attention = ops.relu(self.theta_x(x) + self.phi_g(g))
        return x * self.psi(attention)

    def compute_output_shape(self, input_shape):
        return self._check_shapes(input_shape)[0]

    def get_config(self):
        config = super().get_config()
        config["filters"] = self.filters
        config["spatial_dims"] = self.spatial_dims
        return config
