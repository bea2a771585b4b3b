"""Images larger than memory: `predict_tiled` against a whole-image predict.

A 4,096×4,096 RGB image (1,024² with --quick) through a `UNet(2, filters=8,
depth=3)`: `seglayers.predict_tiled` in 256×256 tiles (overlap 0.25, batch
4, Gaussian blend) against `model.predict` on the whole image at once. Each
runs in a fresh process, and the row is the peak resident memory of that
process (Linux `VmHWM`: imports, model, the image and the prediction). The
second row is the time of one prediction each (tiles recompute the overlap:
about 1.8× the pixels).
"""

from benchmarks.harness import peak_memory_mb, row, summarize

_SETUP = """
import time
import numpy as np
import keras
import seglayers
keras.utils.set_random_seed(0)
model = seglayers.UNet(2, filters=8, depth=3)
model.build((None, None, None, 3))
image = np.random.default_rng(0).uniform(0, 1, ({size}, {size}, 3)).astype("float32")
"""

_TILED = """
start = time.perf_counter()
seglayers.predict_tiled(model, image, 256, overlap=0.25, batch_size=4, verbose=0)
print("SECONDS", time.perf_counter() - start)
"""

_WHOLE = """
start = time.perf_counter()
model.predict(image[None], verbose=0)
print("SECONDS", time.perf_counter() - start)
"""


def run(backend, quick=False):
    if backend != "tensorflow":
        return []  # the memory story is the same on every backend
    size = 1024 if quick else 4096
    setup = _SETUP.format(size=size)
    tiled = peak_memory_mb(setup, _TILED, backend)
    whole = peak_memory_mb(setup, _WHOLE, backend)
    what = f"UNet(2, filters=8, depth=3), one {size}² image"
    return [
        row(
            "tiled prediction",
            backend,
            f"{what}: process peak RSS, predict_tiled (256² tiles, batch 4) vs "
            "whole-image predict",
            summarize([tiled["peak_mb"]]),
            summarize([whole["peak_mb"]]),
            "MB",
            higher=False,
        ),
        row(
            "tiled prediction",
            backend,
            f"{what}: time, predict_tiled vs whole-image predict",
            summarize([tiled["seconds"]]),
            summarize([whole["seconds"]]),
            "s",
            higher=False,
        ),
    ]
