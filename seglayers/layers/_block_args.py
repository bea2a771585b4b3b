"""The `ConvBlock` arguments that the blocks wrapping one hand down to it."""

CONV_BLOCK_ARGS = (
    "filters",
    "num_convs",
    "normalization",
    "activation",
    "dropout",
    "residual",
    "kernel_size",
)


def conv_block_config(block):
    """The `ConvBlock` arguments of `block`, for an outer `get_config`."""
    return {name: getattr(block, name) for name in CONV_BLOCK_ARGS}
