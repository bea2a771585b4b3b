"""Metric update cost: seglayers.MeanIoU vs keras.metrics.MeanIoU.

The same 16×256×256 batch of 21 classes, one `update_state` inside a
compiled function (tf.function on TensorFlow, jax.jit of the stateless
update on JAX), milliseconds per update; ratio = Keras / ours. Two rows:
from class ids (the confusion-matrix counting alone) and from logits (what a
model gives: the arg-max over 21 channels comes first, for Keras too, with
`sparse_y_pred=False`).
"""

import numpy as np

from benchmarks.harness import row, time_pair


def run(backend, quick=False):
    import keras

    import seglayers

    shape = (8 if quick else 16, 256, 256)
    num_classes = 21
    rng = np.random.default_rng(0)
    y_true = keras.ops.convert_to_tensor(rng.integers(0, num_classes, shape), "int32")
    logits = keras.ops.convert_to_tensor(
        rng.normal(size=shape + (num_classes,)).astype("float32")
    )
    ids = keras.ops.cast(keras.ops.argmax(logits, axis=-1), "int32")
    rows = []
    for what, y_pred, sparse in (("class ids", ids, True), ("logits", logits, False)):
        ours = seglayers.MeanIoU(num_classes)
        theirs = keras.metrics.MeanIoU(num_classes, sparse_y_pred=sparse)
        ours_time, theirs_time = time_pair(
            _compiled(backend, ours, y_true, y_pred),
            _compiled(backend, theirs, y_true, y_pred),
            repeats=5 if quick else 10,
        )
        rows.append(
            row(
                "metric update",
                backend,
                f"MeanIoU.update_state from {what}, {shape[0]}x256x256, 21 classes",
                ours_time,
                theirs_time,
                "ms",
                per_call=1000.0,
                higher=False,
            )
        )
    return rows


def _compiled(backend, metric, y_true, y_pred):
    import warnings

    # Keras's own MeanIoU asks for int64, which JAX without x64 truncates,
    # warning at every trace.
    warnings.filterwarnings("ignore", message="Explicitly requested dtype int64")
    if backend == "tensorflow":
        import tensorflow as tf

        update = tf.function(metric.update_state)
        return lambda: update(y_true, y_pred)
    if backend == "jax":
        import jax

        update = jax.jit(metric.stateless_update_state)
        state = [v.value for v in metric.variables]

        def call():
            jax.block_until_ready(update(state, y_true, y_pred))

        return call
    return lambda: metric.update_state(y_true, y_pred)
