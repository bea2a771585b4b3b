"""Training on several machines with `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3.15's TensorFlow trainer cannot run `fit` or `evaluate` under
TensorFlow's own `MultiWorkerMirroredStrategy` (TensorFlow 2.21), for any
model, because of how it calls `strategy.reduce`:

1. `TensorFlowTrainer._maybe_symbolic_build` hands the whole first batch,
   an `(x, y)` tuple of `PerReplica` values, to one `strategy.reduce` call.
   `reduce` takes one value; `MirroredStrategy` happens to accept the tuple,
   but the collective strategy converts it with `tf.convert_to_tensor` and
   fails: "Attempt to convert a value (PerReplica:{...}) with an unsupported
   type ... to a Tensor".
2. `reduce_per_replica` then averages every log (loss, metrics) across
   workers with `strategy.reduce("MEAN", v, axis=0)`, and logs are scalars:
   "Invalid reduction dimension 0 for input with 0 dimensions".

`MultiWorkerMirroredStrategy` below is TensorFlow's strategy with a `reduce`
that takes nested structures (one reduction per value: a Python list is a
list of values, where TensorFlow's takes it for one tensor) and reduces
scalars without an axis; nothing else changes. Use it where you would use
TensorFlow's:

    strategy = seglayers.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = seglayers.UNet(...)
        model.compile(...)
    model.fit(dataset, ...)

Tested with two workers on 127.0.0.1 in tests/distribute/multi_worker_test.py,
where a strict expected-failure test runs the same job with TensorFlow's own
strategy and fails the day Keras fixes these calls (then this class can go).
"""

import tensorflow as tf


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` that Keras 3's `fit` and
    `evaluate` can use (see the module docstring for the two Keras bugs)."""

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(one):
            local = self.experimental_local_results(one)[0]
            rank = getattr(getattr(local, "shape", None), "rank", None)
            return parent.reduce(reduce_op, one, axis if rank else None)

        return tf.nest.map_structure(reduce_one, value)
