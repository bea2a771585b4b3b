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

Each also as CPU time per element (`time.process_time` of the same passes,
every thread of the process): on 2 cores both pipelines keep the cores busy,
so the wall-clock ratio follows the CPU one. A third loader row is the
floor of any image+mask loader here: the two files read, decoded and cast,
nothing checked or resized, against Keras's loader; the loader's CPU ratio
cannot pass it.

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


def _pass_rows(what, ours, theirs, unit, n, backend, quick, wall=True, cpu=True):
    """Rows of one pass of `ours` against one of `theirs` (each pass a new
    iterator, as an epoch of `fit`): elements per second (if `wall`) and
    CPU microseconds per element (if `cpu`)."""
    ours_time, theirs_time = time_pair(
        lambda: [None for _ in ours],
        lambda: [None for _ in theirs],
        repeats=3 if quick else 5,
        warmup=1,
    )
    wall_row = row("input pipeline", backend, what, ours_time, theirs_time, unit, n)
    cpu_row = row(
        "input pipeline (CPU)",
        backend,
        what,
        ours_time["cpu"],
        theirs_time["cpu"],
        "µs CPU/" + {"img/s": "img", "masks/s": "mask"}[unit],
        per_call=1e6 / n,
        higher=False,
    )
    return ([wall_row] if wall else []) + ([cpu_row] if cpu else [])


def _decode_pairs(root, n):
    """Image and mask files read, decoded and cast as the loader decodes
    them, nothing checked or resized: the least a pair loader does."""
    import tensorflow as tf

    from seglayers.data.directory import without_autotuning
    from seglayers.data.mask_files import decode_image

    def decode(image_path, mask_path):
        image = decode_image(image_path)
        mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
        return tf.cast(image, tf.float32), tf.cast(mask, tf.int32)

    paths = tuple(
        [os.path.join(root, kind, f"{i:04d}.png") for i in range(n)]
        for kind in ("images", "masks")
    )
    pairs = tf.data.Dataset.from_tensor_slices(paths)
    pairs = pairs.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(32)
    return without_autotuning(pairs.prefetch(tf.data.AUTOTUNE))


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
        what = (
            "segmentation_dataset_from_directory (image+mask) vs "
            f"image_dataset_from_directory (image only), {n} PNGs {size}²"
        )
        rows += _pass_rows(what, ours, theirs, "img/s", n, backend, quick, cpu=False)
        keras_off = without_autotuning(theirs)
        label = ", both without autotuning"
        rows += _pass_rows(what + label, ours, keras_off, "img/s", n, backend, quick)
        floor = (
            "floor: image+mask read, decoded and cast, nothing checked or "
            f"resized, vs image_dataset_from_directory (image only){label}"
        )
        pairs = _decode_pairs(root, n)
        args = ("img/s", n, backend, quick)
        rows += _pass_rows(floor, pairs, keras_off, *args, wall=False)

    # 1,024 masks a pass (256 in a quick run): shorter passes left the
    # best-of ratio at the mercy of one slow or fast pass.
    masks = np.random.default_rng(0).integers(0, 21, size=(256, size, size, 1))
    passes = 1 if quick else 4
    base = tf.data.Dataset.from_tensor_slices(masks.astype("int32")).repeat(passes)
    base = base.batch(32)
    with_layer = base.map(seglayers.OneHotMask(21))
    by_hand = base.map(lambda m: tf.one_hot(m[..., 0], 21))
    what = f"OneHotMask(21) in tf.data vs tf.one_hot, {size}² masks"
    n_masks = 256 * passes
    rows += _pass_rows(what, with_layer, by_hand, "masks/s", n_masks, backend, quick)
    return rows
