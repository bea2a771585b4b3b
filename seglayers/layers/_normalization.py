"""The normalization layers a block can use, made from one string."""

import keras

from seglayers.distribute.batch_normalization import BatchNormalization

NORMALIZATIONS = ("batch", "group", "layer", None)

# Wu & He (2018) use 32 groups; fewer when the channels do not divide evenly.
_MAX_GROUPS = 32


def num_groups(channels, max_groups=_MAX_GROUPS):
    """Largest divisor of `channels` that is at most `max_groups`."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def make_normalization(normalization, channels, name, dtype=None):
    """Returns a new normalization layer for `channels` features, or None."""
    if normalization == "batch":
        return BatchNormalization(dtype=dtype, name=name)
    if normalization == "group":
        return keras.layers.GroupNormalization(
            groups=num_groups(channels), dtype=dtype, name=name
        )
    if normalization == "layer":
        return keras.layers.LayerNormalization(dtype=dtype, name=name)
    return None
