"""Scaling with image size, and memory, of UNet against the functional U-Net.

1. One training step (`train_on_batch`, batch 4, filters 16, depth 4) at
   64², 128², 192² and 256² (256² skipped with --quick), UNet and the
   hand-written functional network of `training_throughput`, interleaved.
   A convolutional network's work grows in proportion to the pixels, so
   step time should grow with exponent ~1 in the pixel count; the exponent
   is the least-squares slope of log(time) over log(pixels), from 128² up
   (at 64² fixed per-step costs still show).
2. `fit` of the same two models at 128², batch 4, 8 steps
   (`training_throughput.fit_row`), measured here to save a process of its
   own that built, compiled and imported everything again.
3. Peak resident memory of a fresh process that builds the model, makes
   the data and runs `fit` (256², batch 8, one step), UNet against the
   functional network (the same imports and data in both).

One model of each kind serves every size. On TensorFlow its compiled step is
dropped before each size, so every size runs a graph traced for that size
(Keras's `reduce_retracing` would otherwise reuse one graph of unknown
sizes from the second size on, where UNet's skip connections are matched at
run time instead of at trace time): compiling takes 13 to 16 s per model and
size on 2 cores, most of this benchmark's time.
"""

import numpy as np

from benchmarks.harness import peak_memory_mb, row, summarize, time_pair
from benchmarks.training_throughput import (
    check_same_network,
    fit_row,
    functional_unet,
)

FILTERS, DEPTH, BATCH, CLASSES = 16, 4, 4, 4
FIT_SIZE = 128

_MEMORY_SETUP = """
import numpy as np
import keras
import seglayers
from benchmarks.training_throughput import functional_unet
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images = rng.uniform(size=(8, 256, 256, 3)).astype("float32")
masks = rng.integers(0, 4, size=(8, 256, 256, 1))
if {unet}:
    model = seglayers.UNet(4, filters=16, depth=4)
    model.build((None, 256, 256, 3))
else:
    model = functional_unet(4, 16, 4, (256, 256, 3))
"""

_MEMORY_WORK = """
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(images, masks, batch_size=8, epochs=1, verbose=0)
"""


def _exponent(sizes, times):
    pixels = np.log([s * s for s in sizes])
    return float(np.polyfit(pixels, np.log(times), 1)[0])


def run(backend, quick=False):
    import seglayers

    sizes = [64, 128, 192] if quick else [64, 128, 192, 256]
    rng = np.random.default_rng(0)
    ours = seglayers.UNet(CLASSES, filters=FILTERS, depth=DEPTH)
    ours.build((None, None, None, 3))
    theirs = functional_unet(CLASSES, FILTERS, DEPTH, (None, None, 3))
    check_same_network(ours, theirs)
    for model in (ours, theirs):
        model.compile("adam", "sparse_categorical_crossentropy")
    network = f"filters {FILTERS}, depth {DEPTH}"
    rows, ours_times, theirs_times = [], [], []
    for size in sizes:
        images = rng.uniform(size=(BATCH, size, size, 3)).astype("float32")
        masks = rng.integers(0, CLASSES, size=(BATCH, size, size, 1))

        def step(model, images=images, masks=masks):
            return lambda: model.train_on_batch(images, masks)

        if backend == "tensorflow":
            for model in (ours, theirs):
                model.train_function = None  # a graph traced for this size

        ours_time, theirs_time = time_pair(
            step(ours), step(theirs), repeats=2 if quick else 3, warmup=1
        )
        ours_times.append(ours_time["min"])
        theirs_times.append(theirs_time["min"])
        rows.append(
            row(
                "scaling",
                backend,
                f"UNet train step, {size}², batch {BATCH}, {network} vs functional",
                ours_time,
                theirs_time,
                "ms",
                per_call=1000.0,
                higher=False,
            )
        )
    fitted = sizes[1:]
    ours_exp = _exponent(fitted, ours_times[1:])
    theirs_exp = _exponent(fitted, theirs_times[1:])
    rows.append(
        {
            "question": "scaling",
            "backend": backend,
            "what": f"exponent of step time in pixels, {fitted[0]}² to "
            f"{fitted[-1]}² (1.0 = proportional), UNet vs functional",
            "ours": ours_exp,
            "baseline": theirs_exp,
            "unit": "exponent",
            "ratio": theirs_exp / ours_exp,
            "spread": 0.0,
            "repeats": 1,
        }
    )
    steps = 4 if quick else 8
    shape = (BATCH * steps, FIT_SIZE, FIT_SIZE)
    images = rng.uniform(size=shape + (3,)).astype("float32")
    masks = rng.integers(0, CLASSES, size=shape + (1,))
    rows.append(fit_row(backend, network, ours, theirs, images, masks, BATCH, quick))
    ours_mb = peak_memory_mb(_MEMORY_SETUP.format(unet=True), _MEMORY_WORK, backend)[
        "peak_mb"
    ]
    theirs_mb = peak_memory_mb(_MEMORY_SETUP.format(unet=False), _MEMORY_WORK, backend)[
        "peak_mb"
    ]
    rows.append(
        row(
            "memory",
            backend,
            "peak RSS of a process that fits one step, 256², batch 8, UNet vs "
            "functional",
            summarize([ours_mb]),
            summarize([theirs_mb]),
            "MB",
            higher=False,
        )
    )
    return rows
