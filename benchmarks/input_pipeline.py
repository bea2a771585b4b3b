"""Input pipeline: the folder loader, and OneHotMask inside tf.data.

1. `segmentation_dataset_from_directory` (images and masks; greyscale PNG
   masks decoded in TensorFlow and checked, Pillow only for palette PNGs)
   against `keras.utils.image_dataset_from_directory` reading the same
   images alone (`labels=None`): images/s over one pass, 256×256 PNGs,
   batch 32. The ratio is the price of the masks, less the resize that
   files already at `image_size` skip (Keras always resizes). Twice: Keras's
   loader as it comes, and with tf.data's autotuning off as seglayers'
   loader has it (the decode work alone).
2. `OneHotMask` mapped over a dataset of 256×256 id masks against the
   hand-written `tf.one_hot` a user would map instead: masks/s.

TensorFlow only: the loader is tf.data.
"""

import os
import tempfile

import numpy as np
from PIL import Image

from benchmarks.harness import row, time_pair


def _write_folder(root, n, size):
    from seglayers.datasets import shapes

    images, masks = shapes.load_data(n, (size, size), seed=0)
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    for i in range(n):
        Image.fromarray(images[i].astype(np.uint8)).save(
            os.path.join(root, "images", f"{i:04d}.png")
        )
        Image.fromarray(masks[i, ..., 0].astype(np.uint8), mode="L").save(
            os.path.join(root, "masks", f"{i:04d}.png")
        )


def _pass_row(what, ours, theirs, unit, n, backend, quick):
    """A row of elements per second over one pass of `ours` against one of
    `theirs` (each pass a new iterator, as an epoch of `fit`)."""
    ours_time, theirs_time = time_pair(
        lambda: [None for _ in ours],
        lambda: [None for _ in theirs],
        repeats=3 if quick else 5,
        warmup=1,
    )
    return row(
        "input pipeline",
        backend,
        what,
        ours_time,
        theirs_time,
        unit,
        per_call=float(n),
    )


def run(backend, quick=False):
    if backend != "tensorflow":
        return []
    import keras
    import tensorflow as tf

    import seglayers
    from seglayers.data.directory import without_autotuning

    n, size = (64 if quick else 256), 256
    rows = []
    with tempfile.TemporaryDirectory() as root:
        _write_folder(root, n, size)
        ours = seglayers.segmentation_dataset_from_directory(
            root, image_size=(size, size), num_classes=4, shuffle=False
        )
        theirs = keras.utils.image_dataset_from_directory(
            os.path.join(root, "images"),
            labels=None,
            image_size=(size, size),
            shuffle=False,
        )
        # Keras's loader as it comes (tf.data autotuning on, whose iterator
        # teardown waits for the autotuning thread: see
        # `seglayers.data.directory.without_autotuning`), and with autotuning
        # off as seglayers' loader has it: the decode work alone.
        for label, baseline in (
            ("", theirs),
            (", both without autotuning", without_autotuning(theirs)),
        ):
            what = (
                "segmentation_dataset_from_directory (image+mask) vs "
                f"image_dataset_from_directory (image only), {n} PNGs {size}²{label}"
            )
            rows.append(_pass_row(what, ours, baseline, "img/s", n, backend, quick))

    masks = np.random.default_rng(0).integers(0, 21, size=(n, size, size, 1))
    base = tf.data.Dataset.from_tensor_slices(masks.astype("int32")).batch(32)
    with_layer = base.map(seglayers.OneHotMask(21))
    by_hand = base.map(lambda m: tf.one_hot(m[..., 0], 21))
    what = f"OneHotMask(21) in tf.data vs tf.one_hot, {size}² masks"
    rows.append(_pass_row(what, with_layer, by_hand, "masks/s", n, backend, quick))
    return rows
