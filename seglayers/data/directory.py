"""`tf.data` pipelines from folders of images and masks."""

import keras
import numpy as np
import tensorflow as tf

from seglayers._masks import num_ids
from seglayers._palettes import check_palette
from seglayers._sizes import sizes
from seglayers._validation import (
    check_bool,
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
    check_seed,
    is_int,
    is_real,
)
from seglayers.data.file_checks import check_pairs, find_pairs
from seglayers.data.mask_files import (
    decode_image,
    first_undecodable,
    mask_reader,
    tf_decoder,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Lossy formats would invent labels at every edge, so masks are lossless.
MASK_EXTENSIONS = (".png", ".bmp", ".gif")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
SUBSETS = ("training", "validation", "both")


def segmentation_dataset_from_directory(
    directory,
    image_size=(256, 256),
    batch_size=32,
    num_classes=None,
    ignore_class=None,
    palette=None,
    shuffle=True,
    seed=None,
    validation_split=None,
    subset=None,
    interpolation="bilinear",
    one_hot=False,
    as_dict=False,
):
    """Makes a `tf.data.Dataset` of `(image, mask)` batches from a folder.

    In the manner of `keras.utils.image_dataset_from_directory`, for
    segmentation. The folder holds two sub-folders, paired by file stem:

    ```
    directory/
        images/  a.jpg  b.png ...   (PNG, JPEG, BMP or GIF)
        masks/   a.png  b.png ...   (PNG, BMP or GIF; lossless)
    ```

    Every file's header (and a cut-short file's end) is checked up front, so
    a broken file is named, and a mask must have its image's size (a file
    rewritten at another size afterwards may fail when read). A file damaged
    inside fails mid-epoch with TensorFlow's error, which names no file:
    `seglayers.data.directory.undecodable_file(directory)` finds it. Masks
    decode in TensorFlow (greyscale and RGB PNG, BMP), except palette-mode
    ("P") PNGs, which Pillow reads: they give their palette indices, the
    class ids, and not the colours that `tf.io.decode_png` would expand them
    to. A single-channel mask gives its
    values (2- and 4-bit PNGs their samples, not Pillow's 0..255); a GIF,
    as a palette PNG, its indices (which Pillow's GIF writer renumbers:
    write masks as PNG); an RGB mask, or a palette file read by colour,
    needs `palette` to map colours to ids.
    JPEG or WebP data named `.png`, 16-bit colour PNG masks without
    `palette` and palette or 1-bit BMP images, which neither reader reads
    exactly, are refused. Masks are
    resized with nearest neighbour only, never inventing labels; ids are
    checked as each mask is read, and one outside `[0, num_classes)` that is
    not `ignore_class` stops the pipeline with an error naming the file.

    Args:
        directory: path of the folder that holds `images/` and `masks/`.
        image_size: `(height, width)` every image and mask is resized to.
            Defaults to `(256, 256)`.
        batch_size: int, or `None` for unbatched elements. Defaults to 32.
        num_classes: int, the number of classes; mask ids are checked against
            it. 1 means binary masks (ids 0 and 1) for a model with one
            sigmoid channel. `None` skips the check (and cannot be used with
            `palette` or `one_hot`). Defaults to `None`.
        ignore_class: int or `None`, the id of unlabelled pixels (e.g. 255);
            it must not also be a class id. Without `num_classes` the ids,
            this one included, pass through unchecked.
        palette: list of `[r, g, b]` colours (index = class id) for RGB masks,
            plus optionally the colour of ignored pixels (mapped to
            `ignore_class`). Needs `num_classes`.
        shuffle: bool, whether to shuffle the pairs (every epoch). Defaults
            to `True`.
        seed: int, the seed for shuffling and the split.
        validation_split: float in (0, 1), the fraction kept for validation.
        subset: `"training"`, `"validation"` or `"both"` (returns a pair);
            needed with a `validation_split`, and `"training"` or
            `"validation"` need a `seed` (the same in both calls).
        interpolation: how images are resized (masks: always nearest).
            `"bicubic"`, `"lanczos3"` and `"lanczos5"` overshoot [0, 255]
            at sharp edges (-40 to 295 on random noise), unclipped as in
            Keras's loader. Defaults to `"bilinear"`.
        one_hot: bool, yield one-hot masks `(H, W, num_classes)` made by
            `OneHotMask` (needs the TensorFlow backend and `num_classes` of
            at least 2). Defaults to `False`:
            int32 ids `(H, W, 1)`.
        as_dict: bool, yield `{"images": ..., "segmentation_masks": ...}`,
            the convention of Keras's and keras-cv's augmentation layers,
            which then move images and masks together (keras-cv gives the
            masks back as float32 ids; cast them back with `tf.cast`).
            Defaults to `False`: `(image, mask)` tuples.

    Returns:
        A `tf.data.Dataset` of float32 images `(batch, H, W, 3)` in
        [0, 255] (see `interpolation`) and masks, or a `(train, validation)` pair for
        `subset="both"`. With tf.data's autotuning off (see
        `without_autotuning`), also for steps mapped after it; give it back
        with `dataset.with_options(options)`, `options.autotune.enabled =
        True`.
    """
    seed = check_seed("seed", seed)
    shuffle = check_bool("shuffle", shuffle)  # "no" was true: it shuffled
    _check_arguments(
        image_size, batch_size, interpolation, validation_split, subset, seed
    )
    ignore_class = check_ignore_class(ignore_class)
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
        ignore_class = check_ignore_not_a_class(ignore_class, num_classes)
    pairs, (decoders, file_sizes) = _find_pairs(directory)
    if palette is not None:
        palette = _palette(palette, num_classes, ignore_class)
    splits, seed = split_pairs(pairs, directory, shuffle, seed, validation_split)
    options = dict(
        decoders=decoders,
        file_sizes=file_sizes,
        image_size=tuple(int(s) for s in image_size),
        batch_size=batch_size,
        num_classes=num_classes,
        ignore_class=ignore_class,
        palette=palette,
        seed=seed,
        interpolation=interpolation,
        one_hot=one_hot,
        as_dict=as_dict,
    )
    return subset_datasets(splits, subset, shuffle, _make_dataset, **options)


def split_pairs(pairs, directory, shuffle, seed, validation_split):
    """`({"training": pairs, "validation": pairs}, seed)`: the pairs shuffled
    by `seed` (drawn if `None`, and returned so the data shuffles with it)
    and split, or only `"training"` without a `validation_split`."""
    if shuffle or validation_split:
        if seed is None:
            seed = int(np.random.default_rng().integers(1_000_000))
        np.random.default_rng(seed).shuffle(pairs)
    if not validation_split:
        return {"training": pairs}, seed
    n_val = int(len(pairs) * validation_split)
    if n_val == 0 or n_val == len(pairs):
        raise ValueError(
            f"`validation_split`={validation_split} of {len(pairs)} pairs in "
            f"{directory} leaves an empty subset; use more data or another "
            "split."
        )
    return {"training": pairs[:-n_val], "validation": pairs[-n_val:]}, seed


def subset_datasets(splits, subset, shuffle, make_dataset, **options):
    """The data set of `subset`, or the (training, validation) pair for
    `"both"`, whose validation half is not shuffled (as in Keras's
    loaders; `subset="validation"` follows `shuffle`)."""
    if subset == "both":
        return (
            make_dataset(splits["training"], shuffle=shuffle, **options),
            make_dataset(splits["validation"], shuffle=False, **options),
        )
    return make_dataset(splits[subset or "training"], shuffle=shuffle, **options)


def _check_arguments(
    image_size, batch_size, interpolation, validation_split, subset, seed
):
    image_size = sizes(image_size)
    if (
        not isinstance(image_size, (list, tuple))
        or len(image_size) != 2
        or not all(is_int(s) and s > 0 for s in image_size)
    ):
        raise ValueError(
            "`image_size` must be `(height, width)`, two positive ints, e.g. "
            f"(256, 256). Received: image_size={image_size!r}"
        )
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {', '.join(INTERPOLATIONS)}. "
            f"Received: interpolation={interpolation!r}"
        )
    check_split_arguments(batch_size, validation_split, subset, seed)


def check_split_arguments(batch_size, validation_split, subset, seed):
    """Checks the arguments every folder loader shares."""
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise ValueError(
            f"`batch_size` must be a positive int or None. Received: "
            f"batch_size={batch_size!r}"
        )
    if validation_split is not None and (not is_real(validation_split)):
        raise TypeError(
            "`validation_split` must be a float in (0, 1), e.g. 0.2, or None. "
            f"Received: validation_split={validation_split!r}"
        )
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            "`validation_split` must be in (0, 1), e.g. 0.2. "
            f"Received: validation_split={validation_split!r}"
        )
    if subset is not None and subset not in SUBSETS:
        raise ValueError(
            f"`subset` must be one of 'training', 'validation' or 'both'. "
            f"Received: subset={subset!r}"
        )
    if subset is not None and validation_split is None:
        raise ValueError(f"`subset`={subset!r} needs a `validation_split`, e.g. 0.2.")
    if validation_split is not None and subset is None:
        # Keras's loaders refuse this too; it used to give the training part
        # alone, the validation files silently left out.
        raise ValueError(
            f"`validation_split`={validation_split} needs a `subset`: "
            "'training' or 'validation' (one call each, with the same `seed`), "
            "or 'both' for the (training, validation) pair. Received: subset=None"
        )
    if subset in ("training", "validation") and seed is None:
        # Each call would draw its own split, and the two calls' subsets
        # would share files.
        raise ValueError(
            f"`subset`={subset!r} needs a `seed`, the same in the call for the "
            "other subset, so that the two splits match and share no file "
            "(e.g. seed=0); or pass subset='both', which splits once. "
            "Received: seed=None"
        )


def _find_pairs(directory):
    example = "images/a.jpg with masks/a.png"
    pairs = find_pairs(directory, "image", IMAGE_EXTENSIONS, MASK_EXTENSIONS, example)
    return pairs, check_pairs(pairs)


def undecodable_file(directory):
    """`(path, reason)` of the first file of the folder that TensorFlow's
    decoder refuses (see `mask_files.first_undecodable`), or None."""
    pairs, (decoders, _) = _find_pairs(directory)
    return first_undecodable(pairs, decoders)


def _palette(palette, num_classes, ignore_class):
    """`palette` checked, for `num_ids(num_classes)` classes."""
    if num_classes is None:
        raise ValueError(
            "`palette` needs `num_classes`, the number of classes its colours "
            "name (one colour per class id, so most often the number of "
            "colours). Received: num_classes=None"
        )
    return check_palette(palette, num_ids(num_classes), ignore_class)


def _make_dataset(
    pairs,
    *,
    decoders,
    file_sizes,
    image_size,
    batch_size,
    num_classes,
    ignore_class,
    palette,
    seed,
    shuffle,
    interpolation,
    one_hot,
    as_dict,
):
    decoders = [tf_decoder(decoders[p[1]], palette, p[1]) for p in pairs]
    # From the headers `check_pairs` read: whether every file needs no resize
    # (not for GIF images: Pillow's size may be a frame's, TensorFlow's the
    # screen's).
    at_size = all(
        file_sizes[p[1]] == image_size and not p[0].lower().endswith(".gif")
        for p in pairs
    )
    names = sorted(set(decoders))
    read_mask = mask_reader(names, num_classes, ignore_class, palette)
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant([p[0] for p in pairs]),
            tf.constant([p[1] for p in pairs]),
            tf.constant([names.index(d) for d in decoders], tf.int32),
        )
    )
    if shuffle:
        dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)

    def load(image_path, mask_path, decoder):
        # Images decode in TensorFlow (no GIL); `check_pairs` has already
        # named files that are cut short, which this decoder would not.
        image = _resize(
            decode_image(image_path), image_size, interpolation, tf.float32, at_size
        )
        mask = read_mask(mask_path, decoder)
        return image, _resize(mask, image_size, "nearest", tf.int32, at_size)

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot:
        dataset = dataset.map(_one_hot(num_classes, ignore_class))
    if as_dict:
        dataset = dataset.map(lambda x, y: {"images": x, "segmentation_masks": y})
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return without_autotuning(dataset.prefetch(tf.data.AUTOTUNE))


def without_autotuning(dataset):
    """`dataset` with tf.data's autotuning off.

    Works around TensorFlow 2.21: the destructor of an autotuned iterator
    waits for the iterator's autotuning thread, which sleeps out its current
    period (doubling up to a minute) in `Model::OptimizeLoop` before it sees
    the cancellation. `fit` drops an iterator at the end of every epoch, so
    epochs began 0 to 30 s late, at random: in the 3-D `seglayers train`
    run, 4 epochs of 10, about 75 s of 300 (seen with gdb: the main thread
    in `RootDataset::Iterator::~Iterator`, the model thread in
    `OptimizeLoop`). Without autotuning, `num_parallel_calls=AUTOTUNE` runs
    a fixed number of calls (the cores, up to 16), and the folder loaders
    read as fast (1,151 against 1,143 images/s, 256 PNGs of 256², median of
    7 passes).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


# At scale 1 these give back every pixel exactly (lanczos is off by 3e-5),
# so a file already at `image_size` skips them: for a 256² mask, the nearest
# resize cost three times its decode.
_EXACT_AT_SCALE_1 = ("bilinear", "nearest", "bicubic", "area")


def _resize(tensor, size, method, dtype, at_size=False):
    """`tensor` (H, W, C) resized to `size` with `method`, as `dtype`.

    `at_size`: every file is at `size` (their headers said so), so none is
    resized, with no per-file `tf.cond` (4% of the loader's CPU time,
    benchmarks/README.md). A file that changed size since fails with
    TensorFlow's shape error, which does not name it: a check that named
    it cost 1.5% more."""

    def resize():
        return tf.cast(tf.image.resize(tensor, size, method=method), dtype)

    if method in _EXACT_AT_SCALE_1 and at_size:
        return tf.ensure_shape(tf.cast(tensor, dtype), size + (tensor.shape[-1],))
    if method in _EXACT_AT_SCALE_1:
        same = tf.reduce_all(tf.shape(tensor)[:2] == size)
        tensor = tf.cond(same, lambda: tf.cast(tensor, dtype), resize)
    else:
        tensor = resize()
    tensor.set_shape(size + (tensor.shape[-1],))
    return tensor


def _one_hot(num_classes, ignore_class):
    from seglayers.preprocessing.one_hot_mask import OneHotMask

    if num_classes is None:
        raise ValueError(
            "`one_hot=True` needs `num_classes`, the length of the one-hot "
            "axis: pass it (e.g. num_classes=3 for ids 0, 1 and 2). "
            "Received: num_classes=None"
        )
    if num_classes == 1:
        raise ValueError(
            "`one_hot=True` with num_classes=1 (binary masks, one sigmoid "
            "channel): the 0/1 ids are already the target. Leave `one_hot` "
            "False, or use num_classes=2 for two softmax channels."
        )
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`one_hot=True` runs `OneHotMask` inside tf.data, which needs the "
            f"TensorFlow backend (this is {keras.backend.backend()!r}). Load "
            "class ids and put `OneHotMask` in the model instead."
        )
    layer = OneHotMask(num_classes, ignore_class=ignore_class)
    return lambda image, mask: (image, layer(mask))
