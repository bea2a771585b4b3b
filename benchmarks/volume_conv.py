"""seglayers' 3-D convolutions on JAX's CPU against Keras's, in one process.

On JAX on a CPU, seglayers computes 3-D convolutions from 2-D ones and a
2×2×2 stride-2 transposed convolution as a matrix product
(`seglayers/layers/_volume_conv.py`), because XLA's CPU 3-D convolutions
are slow. These rows keep the measurement that justifies replacing Keras's
computation, and show the day XLA catches up (ratio near or below 1):

1. One 3×3×3 convolution, 2×24³×32 → 16 channels, forward and backward
   (jitted gradient of a sum): the rewrite against `keras.ops.conv`.
2. One 2×2×2 stride-2 transposed convolution, 2×12³×32 → 16, the same way,
   against `keras.ops.conv_transpose`.
3. A training step (`train_on_batch`) of the command line's 3-D model,
   `UNet(4, filters=16, depth=3, spatial_dims=3)`, 24³ volumes, batch 2,
   Adam and `DiceCrossEntropyLoss`: seglayers' layers against the same
   model traced with Keras's computation (`_volume_conv.ENABLED = False`).
4. `predict_on_batch` of that model on 2 volumes of 48³.

Elsewhere (TensorFlow, PyTorch, JAX on a GPU) the layers are Keras's own,
so this benchmark has rows on JAX only.
"""

import numpy as np

from benchmarks.harness import row, time_pair

VERSUS = "seglayers vs Keras's convolutions"


def _row(backend, what, ours_time, keras_time):
    """A row in ms, Keras's time over seglayers' as the ratio."""
    question = "3-D convolution on JAX's CPU"
    return row(question, backend, what, ours_time, keras_time, "ms", 1000, False)


def _keras_computation(fn):
    """`fn` traced and run with Keras's own 3-D convolutions."""
    from seglayers.layers import _volume_conv

    def call():
        _volume_conv.ENABLED = False
        try:
            return fn()
        finally:
            _volume_conv.ENABLED = True

    return call


def _op_rows(backend, quick):
    import jax
    from keras import ops

    from seglayers.layers import _volume_conv

    rng = np.random.default_rng(0)
    size = 16 if quick else 24
    cases = [
        (
            f"Conv3D 3×3×3, 2×{size}³×32 → 16, forward + backward",
            (2, size, size, size, 32),
            (3, 3, 3, 32, 16),
            lambda x, k: _volume_conv.conv3d_from_2d(x, k, "same", (1, 1, 1)),
            lambda x, k: ops.conv(x, k, padding="same"),
        ),
        (
            f"Conv3DTranspose 2×2×2 stride 2, 2×{size // 2}³×32 → 16, "
            "forward + backward",
            (2, size // 2, size // 2, size // 2, 32),
            (2, 2, 2, 16, 32),
            _volume_conv.conv3d_transpose_as_product,
            lambda x, k: ops.conv_transpose(x, k, strides=2, padding="same"),
        ),
    ]
    rows = []
    for what, x_shape, k_shape, ours, keras_op in cases:
        x = rng.normal(size=x_shape).astype("float32")
        k = (rng.normal(size=k_shape) * 0.1).astype("float32")

        def step(op, x=x, k=k):
            grad = jax.jit(jax.grad(lambda x, k: ops.sum(op(x, k) ** 2), (0, 1)))
            return lambda: jax.block_until_ready(grad(x, k))

        ours_time, keras_time = time_pair(step(ours), step(keras_op), repeats=5)
        rows.append(
            _row(backend, f"{what}: seglayers vs keras.ops", ours_time, keras_time)
        )
    return rows


def _model_rows(backend, quick):
    import keras

    import seglayers

    size, big = (16, 32) if quick else (24, 48)
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, size, size, size, 1)).astype("float32")
    masks = rng.integers(0, 4, size=(2, size, size, size))
    volumes = rng.uniform(size=(2, big, big, big, 1)).astype("float32")
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = seglayers.UNet(4, filters=16, depth=3, spatial_dims=3)
        model.compile("adam", seglayers.DiceCrossEntropyLoss())
        models.append(model)
    what = "UNet(4, filters=16, depth=3, spatial_dims=3)"
    ours_time, keras_time = time_pair(
        lambda: models[0].train_on_batch(images, masks),
        _keras_computation(lambda: models[1].train_on_batch(images, masks)),
        repeats=3 if quick else 5,
        warmup=1,
    )
    step = f"{what}, train_on_batch, 2×{size}³, Adam"
    rows = [_row(backend, f"{step}: {VERSUS}", ours_time, keras_time)]
    ours_time, keras_time = time_pair(
        lambda: models[0].predict_on_batch(volumes),
        _keras_computation(lambda: models[1].predict_on_batch(volumes)),
        repeats=3,
        warmup=1,
    )
    prediction = f"{what}, predict_on_batch, 2×{big}³"
    rows.append(_row(backend, f"{prediction}: {VERSUS}", ours_time, keras_time))
    return rows


def run(backend, quick=False):
    if backend != "jax":
        return []
    return _op_rows(backend, quick) + _model_rows(backend, quick)
