"""Batch normalization whose moving statistics agree across replicas.

Keras 3.15 (TensorFlow 2.21) creates `BatchNormalization`'s moving mean and
variance with `aggregation="none"`, so under `tf.distribute.MirroredStrategy`
each replica keeps its own copy and they drift apart. The registered name
`seglayers>BatchNormalization` is in every saved seglayers model with batch
normalization: it never changes. `tests/distribute/upstream_test.py` checks
on plain Keras that the drift still happens, and fails the day Keras fixes
it (then this class can become plain Keras's, under the same name).
"""

import keras

from seglayers._api import register


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
