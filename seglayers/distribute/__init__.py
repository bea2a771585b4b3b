"""Distribution: the fixes seglayers needs to run on Keras's engines.

seglayers has no distribution code of its own; it trains under
`tf.distribute` strategies and `keras.distribution` as they are. What it
adds works around upstream bugs, one module each, each naming the versions
and the bug, with a strict expected-failure test on plain Keras
(`tests/distribute/`) that fails the day upstream fixes it:

- `MultiWorkerMirroredStrategy`: TensorFlow's strategy with a `reduce` that
  Keras 3's `fit` and `evaluate` can call (`multi_worker.py`).
- `BatchNormalization` (`seglayers>BatchNormalization`, used by the blocks):
  moving statistics averaged over replicas (`batch_normalization.py`).
- `is_chief()`: whether this process writes files in a multi-worker job
  (`chief.py`).
"""

from seglayers.distribute.batch_normalization import BatchNormalization
from seglayers.distribute.chief import is_chief


def __getattr__(name):
    # TensorFlow is imported only when the strategy is asked for, so that
    # `import seglayers` stays light on the JAX and PyTorch backends.
    if name == "MultiWorkerMirroredStrategy":
        from seglayers.distribute.multi_worker import MultiWorkerMirroredStrategy

        return MultiWorkerMirroredStrategy
    raise AttributeError(f"module 'seglayers.distribute' has no attribute {name!r}")


__all__ = ["BatchNormalization", "MultiWorkerMirroredStrategy", "is_chief"]
