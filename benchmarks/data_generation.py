"""The built-in data sets: samples generated per second on one core.

`seglayers.datasets.shapes.load_data(1000, (128, 128))` and
`seglayers.datasets.volumes.load_data(200, (32, 32, 32))`, each against numpy
merely filling arrays of the same shapes with random numbers (float32
images, int32 masks): the floor for making that much fresh memory. Issue 3
asks for at least 1,000 images of 128×128 per second on one core, issue 15
for at least 50 volumes of 32³; the process is pinned to one CPU while they
are measured.

Backend-independent (numpy), so it runs once, in the TensorFlow pass.
"""

import os

import numpy as np

from benchmarks.harness import row, time_pair


def run(backend, quick=False):
    if backend != "tensorflow":
        return []
    from seglayers.datasets import shapes, volumes

    n, size = (250 if quick else 1000), 128
    num_volumes, side = (50 if quick else 200), 32
    repeats = 3 if quick else 7
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous)})
    try:
        ours, baseline = time_pair(
            lambda: shapes.load_data(n, (size, size), seed=0),
            lambda: _fill((n, size, size), 3),
            repeats=repeats,
            warmup=1,
        )
        volumes_ours, volumes_baseline = time_pair(
            lambda: volumes.load_data(num_volumes, (side,) * 3, seed=0),
            lambda: _fill((num_volumes, side, side, side), 1),
            repeats=repeats,
            warmup=1,
        )
    finally:
        os.sched_setaffinity(0, previous)
    return [
        row(
            "data generation (1 core)",
            "numpy",
            f"shapes.load_data({n}, ({size}, {size})) vs numpy random fill of the "
            "same arrays",
            ours,
            baseline,
            "img/s",
            per_call=float(n),
        ),
        row(
            "data generation (1 core)",
            "numpy",
            f"volumes.load_data({num_volumes}, ({side}, {side}, {side})) vs numpy "
            "random fill of the same arrays",
            volumes_ours,
            volumes_baseline,
            "vol/s",
            per_call=float(num_volumes),
        ),
    ]


def _fill(shape, channels):
    """Fresh float32 samples `shape + (channels,)` and int32 masks of
    `shape + (1,)`, filled with random numbers: the baseline."""
    rng = np.random.default_rng(0)
    samples = rng.random(shape + (channels,), dtype=np.float32)
    samples *= 255
    masks = rng.integers(0, 4, size=shape + (1,), dtype=np.int32)
    return samples, masks
