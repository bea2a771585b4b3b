"""The normalization layers a block can use, made from one string."""

import keras

from seglayers._validation import check_choice
from seglayers.distribute.batch_normalization import BatchNormalization

NORMALIZATIONS = ("batch", "group", "instance", "layer", None)
# What a model's `normalization="auto"` stands for, by `spatial_dims`: batch
# normalization for images (the 0.1.0 default, kept); group normalization
# for volumes, whose batches of 1 or 2 make batch statistics noisy. With up
# to 32 groups it is instance normalization (MONAI's `UNet` default) in every
# level of at most 32 channels, and pools 2 or 4 channels per group in the
# deep levels, where a volume is a few voxels across and one channel's
# statistics are noise (27 voxels at the 3x3x3 bottom of `seglayers train
# --spatial-dims 3`): there, validation mean IoU after 9 epochs was 0.694
# with group and 0.648 with instance normalization (README, "Volumes").
AUTO_NORMALIZATION = {2: "batch", 3: "group"}

# Wu & He (2018) use 32 groups; fewer when the channels do not divide evenly.
_MAX_GROUPS = 32


def num_groups(channels, max_groups=_MAX_GROUPS):
    """Largest divisor of `channels` that is at most `max_groups`."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def resolve_normalization(normalization, spatial_dims):
    """A model's `normalization` argument (`"auto"` allowed) as the value its
    blocks take; raises if it is none of them."""
    check_choice("normalization", normalization, ("auto",) + NORMALIZATIONS)
    if normalization == "auto":
        return AUTO_NORMALIZATION[spatial_dims]
    return normalization


def make_normalization(normalization, channels, name, dtype=None):
    """Returns a new normalization layer for `channels` features, or None."""
    if normalization == "batch":
        return BatchNormalization(dtype=dtype, name=name)
    if normalization == "group":
        return keras.layers.GroupNormalization(
            groups=num_groups(channels), dtype=dtype, name=name
        )
    if normalization == "instance":
        # One group per channel: each sample and channel is normalized over
        # its own spatial axes, as instance normalization is.
        return keras.layers.GroupNormalization(groups=-1, dtype=dtype, name=name)
    if normalization == "layer":
        return keras.layers.LayerNormalization(dtype=dtype, name=name)
    return None
