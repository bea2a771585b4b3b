"""`tf.data` pipelines from folders of volumes (`.npy`, NIfTI) and masks."""

import numpy as np
import tensorflow as tf

from seglayers._masks import bad_id_mask, num_ids, raise_on_bad_ids
from seglayers._sizes import check_spatial_size
from seglayers._validation import (
    check_bool,
    check_fraction,
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
    check_seed,
)
from seglayers.data.directory import (
    check_split_arguments,
    split_pairs,
    subset_datasets,
    without_autotuning,
)
from seglayers.data.file_checks import check_same_size, find_pairs, unreadable

VOLUME_EXTENSIONS = (".npy", ".nii", ".nii.gz")


def volume_dataset_from_directory(
    directory,
    num_classes,
    volume_size=None,
    ignore_class=None,
    batch_size=2,
    shuffle=True,
    seed=None,
    validation_split=None,
    subset=None,
    patch_size=None,
    foreground_fraction=0.5,
):
    """Makes a `tf.data.Dataset` of `(volume, mask)` batches from a folder.

    The 3-D counterpart of `segmentation_dataset_from_directory`. The folder
    holds two sub-folders, paired by file stem (`a.nii.gz` pairs with
    `a.npy`):

    ```
    directory/
        images/  a.nii.gz  b.npy ...   (D, H, W) or (D, H, W, channels)
        masks/   a.nii.gz  b.npy ...   class ids, (D, H, W) or (D, H, W, 1)
    ```

    NIfTI files (`.nii`, `.nii.gz`) are read with nibabel, an optional
    extra: `pip install "seglayers[medical]"`. Arrays keep their stored axis
    order (no reorientation) and the voxel spacing of NIfTI headers is not
    used: resample to one spacing beforehand if the scans differ. Every
    file's header is read up front, so a missing partner, a mask of another
    size than its volume, or an unreadable file is named before training.

    Volumes are resampled to `volume_size` linearly along each axis
    (trilinear), masks by nearest neighbour only, so no id is invented. Mask
    ids are checked as each mask is read: one outside `[0, num_classes)`
    that is not `ignore_class`, or a fractional one, stops the pipeline with
    an error naming the file.

    With `patch_size`, each element is a random patch of its volume (after
    any resampling), as MONAI's `RandCropByPosNegLabeld` does: a share
    `foreground_fraction` of patches is centred on a random foreground voxel
    (an id neither 0 nor `ignore_class`), the others lie anywhere. A volume
    smaller than the patch is padded evenly on both sides: the volume with
    0, the mask with `ignore_class` (so padding counts nowhere), or with 0,
    background, when no `ignore_class` is set. Training patches change every
    epoch; with `shuffle=False` (validation) they are the same each epoch.

    Args:
        directory: path of the folder that holds `images/` and `masks/`.
        num_classes: int, the number of classes; mask ids are checked against
            it (1: binary masks, ids 0 and 1).
        volume_size: `(depth, height, width)` (or an int, for a cube) every
            volume and mask is resampled to, or `None` to keep their sizes
            (then all must have one size, unless `patch_size` is set or
            `batch_size` is `None`).
        ignore_class: int or `None`, the id of unlabelled voxels (e.g. 255);
            it must not also be a class id.
        batch_size: int, or `None` for unbatched elements. Defaults to 2:
            volumes are large.
        shuffle: bool, whether to shuffle the pairs (every epoch).
        seed: int, the seed for shuffling, the split and the patches.
        validation_split: float in (0, 1), the fraction kept for validation.
        subset: `"training"`, `"validation"` or `"both"` (returns a pair);
            needed with a `validation_split`, and `"training"` or
            `"validation"` need a `seed` (the same in both calls).
        patch_size: `(depth, height, width)` (or an int) of random patches,
            or `None` for whole volumes.
        foreground_fraction: float in [0, 1], the share of patches centred
            on foreground. Defaults to 0.5, MONAI's `pos=1, neg=1`.

    Returns:
        A `tf.data.Dataset` of float32 volumes `(batch, D, H, W, channels)`,
        values as stored, and int32 masks `(batch, D, H, W, 1)`, or a
        `(train, validation)` pair for `subset="both"`. With tf.data's
        autotuning off, as `segmentation_dataset_from_directory`.

    Example:

    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for name in ("a", "b"):
    ...     for folder in ("images", "masks"):
    ...         os.makedirs(os.path.join(root, folder), exist_ok=True)
    ...     volume, mask = rng.random((12, 16, 16)), rng.integers(0, 3, (12, 16, 16))
    ...     np.save(os.path.join(root, "images", name + ".npy"), volume)
    ...     np.save(os.path.join(root, "masks", name + ".npy"), mask)
    >>> dataset = volume_dataset_from_directory(
    ...     root, num_classes=3, patch_size=(8, 8, 8), seed=0)
    >>> volumes, masks = next(iter(dataset))
    >>> tuple(volumes.shape), tuple(masks.shape), masks.dtype.name
    ((2, 8, 8, 8, 1), (2, 8, 8, 8, 1), 'int32')
    """
    num_classes = check_positive_int("num_classes", num_classes)
    ignore_class = check_ignore_not_a_class(
        check_ignore_class(ignore_class), num_classes
    )
    if volume_size is not None:
        volume_size = check_spatial_size("volume_size", volume_size, 3)
    if patch_size is not None:
        patch_size = check_spatial_size("patch_size", patch_size, 3)
    # e.g. 0.5: half the patches centred on foreground.
    check_fraction("foreground_fraction", foreground_fraction)
    seed = check_seed("seed", seed)
    # tf.data takes a Python bool only ("no", or numpy's True, failed there)
    shuffle = check_bool("shuffle", shuffle)
    check_split_arguments(batch_size, validation_split, subset, seed)
    pairs = find_pairs(
        directory,
        "volume",
        VOLUME_EXTENSIONS,
        VOLUME_EXTENSIONS,
        "images/a.nii.gz with masks/a.nii.gz",
    )
    channels, size = _check_pairs(pairs, volume_size, patch_size, batch_size)
    splits, seed = split_pairs(pairs, directory, shuffle, seed, validation_split)
    options = dict(
        shape=(patch_size or volume_size or size) + (channels,),
        batch_size=batch_size,
        classes=num_ids(num_classes),
        ignore_class=ignore_class,
        seed=seed,
        volume_size=volume_size,
        patch_size=patch_size,
        foreground_fraction=foreground_fraction,
    )
    return subset_datasets(splits, subset, shuffle, _make_dataset, **options)


def _nibabel(path):
    try:
        import nibabel
    except ImportError:
        raise ImportError(
            f"Reading the NIfTI file {path} needs nibabel, an optional "
            'dependency: pip install "seglayers[medical]" (or convert the '
            "files to .npy)."
        ) from None
    return nibabel


def _open(path, kind):
    """The file's array, not yet read: a memory map (`.npy`) or nibabel's
    proxy (NIfTI), whose `shape` comes from the header alone."""
    nibabel = None if path.lower().endswith(".npy") else _nibabel(path)
    try:
        if nibabel is None:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        return nibabel.load(path).dataobj
    except Exception as error:
        # numpy calls any other file "pickled data" and suggests loading it
        # unsafely.
        if nibabel is None and not _starts_as_npy(path):
            raise ValueError(
                f"The {kind} {path} is not a .npy file: it does not begin with "
                "numpy's header. Save the array with numpy.save, or remove the "
                "file."
            ) from None
        raise unreadable(kind, path, error) from None


def _starts_as_npy(path):
    """Whether the file begins with numpy's magic string (or cannot be
    opened, which the caller's own error reports)."""
    try:
        with open(path, "rb") as f:
            return f.read(6) == b"\x93NUMPY"
    except OSError:
        return True


def _check_dtype(array, kind, path):
    """Raises for a file of complex, string, object or date values: a cast
    would drop an imaginary part without a word, or fail naming no file."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        holds = "class ids (integers, or floats that are whole numbers)"
        fix = "array.astype('int32')" if kind == "mask" else "array.astype('float32')"
        if kind != "mask":
            holds = "numbers (integers or floats)"
        raise ValueError(
            f"The {kind} {path} holds {dtype} values; a {kind} holds {holds}. "
            f"Save it again as numbers, e.g. with numpy.save(path, {fix})."
        )


def _read(path, kind, dtype=None):
    array = _open(path, kind)
    _check_dtype(array, kind, path)
    try:
        return np.asarray(array, dtype=dtype)
    except Exception as error:  # A file cut short after its header.
        raise unreadable(kind, path, error) from None


def read_volume_array(path):
    """The volume file as float32, every voxel checked to be finite: a NaN
    spreads through a network's convolutions, and would end as NaN losses
    and metrics, or as masks of no class."""
    volume = _read(path, "volume", np.float32)
    finite = np.isfinite(volume)
    if not finite.all():
        raise ValueError(
            f"The volume {path} holds {volume.size - int(finite.sum())} NaN or "
            "infinite voxels (or values beyond float32's range, about 3.4e38, "
            "which volumes are read as); replace them (e.g. with "
            "numpy.nan_to_num, or rescale) and save the volume again."
        )
    return volume


def _check_pairs(pairs, volume_size, patch_size, batch_size):
    """`(channels, size)` shared by every volume (`size` is `None` when the
    sizes differ), from the headers; raises on a pair that does not fit."""
    sizes, channels = {}, {}
    for volume_path, mask_path in pairs:
        volume, mask = _open(volume_path, "volume"), _open(mask_path, "mask")
        _check_dtype(volume, "volume", volume_path)
        _check_dtype(mask, "mask", mask_path)
        shape, mask_shape = tuple(volume.shape), tuple(mask.shape)
        if len(shape) not in (3, 4):
            raise ValueError(
                f"The volume {volume_path} has shape {shape}; volumes must be "
                "(depth, height, width) or (depth, height, width, channels): "
                "re-save it as one, or remove the file or its pair."
            )
        if len(mask_shape) not in (3, 4) or mask_shape[3:] not in ((), (1,)):
            raise ValueError(
                f"The mask {mask_path} has shape {mask_shape}; masks must hold "
                "class ids, (depth, height, width) or (depth, height, width, 1): "
                "re-save it as one, or remove the file or its pair."
            )
        if 0 in shape:
            raise ValueError(
                f"The volume {volume_path} has shape {shape}, with an empty "
                "axis; remove the file or its pair, or fix the volume."
            )
        check_same_size(volume_path, shape[:3], mask_path, mask_shape[:3], "volume")
        sizes[volume_path] = shape[:3]
        channels.setdefault(shape[3] if len(shape) == 4 else 1, volume_path)
    if len(channels) > 1:
        shown = ", ".join(f"{path}: {c}" for c, path in channels.items())
        raise ValueError(
            f"The volumes have different numbers of channels ({shown}); a "
            "model takes one. Fix the volumes so that all have the same."
        )
    if len(set(sizes.values())) == 1:
        return next(iter(channels)), next(iter(sizes.values()))
    if volume_size is None and patch_size is None and batch_size is not None:
        shown = ", ".join(
            f"{path}: {'x'.join(map(str, size))}" for path, size in sizes.items()
        )
        raise ValueError(
            f"The volumes differ in size ({shown}), so they cannot be batched. "
            "Pass `volume_size` to resample them to one size, `patch_size` to "
            "sample patches, or batch_size=None. Received: volume_size=None"
        )
    return next(iter(channels)), (None, None, None)


def _read_mask(path, classes, ignore_class):
    """The mask file as int32 ids `(D, H, W)`, every id checked."""
    mask = _read(path, "mask")
    mask = mask.reshape(mask.shape[:3])  # (D, H, W, 1) -> (D, H, W)
    bad = bad_id_mask(mask, classes, ignore_class)
    if bad.any():  # Checked in numpy first: no copy of a large mask to Keras.
        raise_on_bad_ids(mask, bad, classes, ignore_class, f"The mask {path}")
    return mask.astype(np.int32)


def _resample(array, size, linear):
    """`array` resampled to `size` along its first three axes, one axis at a
    time (linear along each axis is trilinear), at voxel centres as
    `tf.image.resize` samples. `linear=False` is nearest neighbour: voxels
    are only copied, so a mask keeps exactly the ids it held."""
    for axis, new in enumerate(size):
        old = array.shape[axis]
        if old == new:
            continue
        centres = (np.arange(new) + 0.5) * (old / new)
        if not linear:
            array = np.take(array, np.minimum(centres.astype(int), old - 1), axis)
            continue
        source = np.clip(centres - 0.5, 0, old - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, old - 1)
        weight = (source - low).astype(np.float32)
        weight = weight.reshape((-1,) + (1,) * (array.ndim - axis - 1))
        low, high = np.take(array, low, axis), np.take(array, high, axis)
        array = low + (high - low) * weight
    return array


def _random_patch(volume, mask, patch_size, fraction, ignore_class, rng):
    """A `patch_size` crop of `volume` and `mask`, centred on a foreground
    voxel with probability `fraction` (see the loader's docstring)."""
    short = [max(p - s, 0) for p, s in zip(patch_size, mask.shape)]
    if any(short):
        widths = [(n // 2, n - n // 2) for n in short]
        volume = np.pad(volume, widths + [(0, 0)])
        fill = 0 if ignore_class is None else ignore_class
        mask = np.pad(mask, widths, constant_values=fill)
    shape, patch = np.array(mask.shape), np.array(patch_size)
    # Both numbers are drawn every time, so that a patch depends on the
    # seed and its position in the data, not on what earlier volumes held.
    on_foreground, anywhere = rng.random() < fraction, rng.random(3)
    start = (anywhere * (shape - patch + 1)).astype(int)
    if on_foreground:
        foreground = mask != 0
        if ignore_class is not None:
            foreground &= mask != ignore_class
        voxels = np.flatnonzero(foreground)
        if voxels.size:  # Else anywhere, as MONAI does.
            centre = np.array(np.unravel_index(rng.choice(voxels), mask.shape))
            start = np.clip(centre - patch // 2, 0, shape - patch)
    window = tuple(slice(a, a + p) for a, p in zip(start, patch))
    return volume[window], mask[window]


def _load(volume_path, mask_path, element_seed, options):
    volume = read_volume_array(volume_path.decode())
    if volume.ndim == 3:
        volume = volume[..., None]
    mask = _read_mask(mask_path.decode(), options["classes"], options["ignore_class"])
    if options["volume_size"] is not None:
        volume = _resample(volume, options["volume_size"], linear=True)
        mask = _resample(mask, options["volume_size"], linear=False)
    if options["patch_size"] is not None:
        rng = np.random.default_rng(int(element_seed) % 2**63)
        volume, mask = _random_patch(
            volume,
            mask,
            options["patch_size"],
            options["foreground_fraction"],
            options["ignore_class"],
            rng,
        )
    return volume.astype(np.float32), mask[..., None].astype(np.int32)


def _make_dataset(pairs, *, shuffle, shape, batch_size, seed, **options):
    paths = ([p[0] for p in pairs], [p[1] for p in pairs])
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    # One seed per element for its patch: new patches each training epoch,
    # the same ones each validation epoch (comparable scores).
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=shuffle)
    dataset = tf.data.Dataset.zip((dataset, seeds))

    def load(paths, element_seed):
        volume, mask = tf.numpy_function(
            lambda v, m, s: _load(v, m, s, options),
            [paths[0], paths[1], element_seed],
            (tf.float32, tf.int32),
            stateful=False,
        )
        volume.set_shape(shape)
        mask.set_shape(shape[:3] + (1,))
        return volume, mask

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return without_autotuning(dataset.prefetch(tf.data.AUTOTUNE))
