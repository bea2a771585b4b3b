"""Counting and arithmetic that the confusion-matrix metrics share.

Counting: pixel `(true, pred)` adds one to bin `true * num_classes + pred`
of a histogram, with `keras.ops.segment_sum` on every backend, because it
is the one counting op that compiles under XLA everywhere: Keras's
`compile()` turns `jit_compile` on for TensorFlow whenever a GPU is visible,
and `keras.ops.bincount` has a data-dependent output size that XLA refuses
("DenseBincount ... must be a compile-time constant"; under `jax.jit` it
cannot be traced at all). A metric cannot tell whether it is being
compiled, so there is one path. Measured on 16×256×256 ids, 443 bins, on
the 2-core CPU of `benchmarks/` (ms per histogram; TF graph / TF XLA /
JAX jit): `bincount` 1.3-3.9 / fails / fails; `segment_sum` into one
histogram 33-39 / 1.7 / 1.2; a one-hot matmul 112 / 133 / 271;
`segment_sum` with each sixteenth of the pixels counted into its own copy
of the bins, then summed, 6.0 / 1.6 / 1.3. TensorFlow's CPU kernel for
unsorted segment sums is that much faster when consecutive pixels write to
their own block of bins; XLA and JAX do not mind. That last one is used.
The whole update (`benchmarks/metric_update.py`, same machine, same
process) then costs 4.7-5.2 ms from class ids on TensorFlow, against 2.5-2.7
with `bincount` and 32 for `keras.metrics.MeanIoU`; from logits 39 against
34 and 87 (JAX: 1.2-1.6 ms from ids, unchanged; 7.0 from logits against
5.8 before the NaN check, and 42 for Keras).
"""

from keras import ops

_MAX_BLOCKS = 16
_MAX_BLOCK_BINS = 2**16


def count_bins(indices, length):
    """Histogram of int32 `indices` (any shape) in `[0, length)`: int32.

    XLA-safe (static output size). Pixels are split into up to 16 runs,
    each counted into its own copy of the bins: 6× faster on TensorFlow's
    CPU kernel than one histogram, see the module docstring.
    """
    indices = ops.reshape(indices, (-1,))
    blocks = max(1, min(_MAX_BLOCKS, _MAX_BLOCK_BINS // length))
    if blocks > 1:
        count = ops.shape(indices)[0]
        run = ops.maximum((count + blocks - 1) // blocks, 1)
        block = ops.arange(count, dtype="int32") // run
        indices = indices + block * length
    counts = ops.segment_sum(
        ops.ones_like(indices), indices, num_segments=blocks * length, sorted=False
    )
    return ops.sum(ops.reshape(counts, (blocks, length)), axis=0)


def safe_divide(numerator, denominator):
    """`numerator / denominator`, NaN where the denominator is 0."""
    return ops.where(
        denominator > 0,
        numerator / ops.maximum(denominator, 1.0),
        float("nan"),
    )


def nan_mean(values):
    """Mean of the non-NaN entries (NaN if none)."""
    present = ops.logical_not(ops.isnan(values))
    total = ops.sum(ops.where(present, values, 0.0))
    count = ops.sum(ops.cast(present, "float32"))
    return safe_divide(total, count)


def per_class_iou(matrix):
    """IoU of each class from a confusion matrix; NaN for absent classes."""
    true_positives = ops.diagonal(matrix)
    union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positives
    return safe_divide(true_positives, union)
