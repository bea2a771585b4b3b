"""The normalization layers a block can use, made from one string."""

import keras

from seglayers._api import register

NORMALIZATIONS = ("batch", "group", "layer", None)

# Wu & He (2018) use 32 groups; fewer when the channels do not divide evenly.
_MAX_GROUPS = 32


def num_groups(channels, max_groups=_MAX_GROUPS):
    """Largest divisor of `channels` that is at most `max_groups`."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


@register
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose moving statistics are averaged
    over replicas when they are updated.

    Keras 3 creates the moving mean and variance with `aggregation="none"`.
    Under `tf.distribute.MirroredStrategy` every replica then updates its own
    copy from its own half of the batch, the copies drift apart, each replica
    predicts with different statistics, and a saved model (which keeps the
    first replica's) predicts differently from the model that saved it
    (Keras 2 used `aggregation=MEAN`). With `"mean"`, each update is the
    mean over the replicas, the same on all of them. Elsewhere (one device,
    JAX, PyTorch) the aggregation is unused, and this is Keras's layer.
    Tested in tests/distribute/one_machine_test.py.
    """

    def add_weight(self, *args, **kwargs):
        if not kwargs.get("trainable", True):
            kwargs.setdefault("aggregation", "mean")
        return super().add_weight(*args, **kwargs)


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
