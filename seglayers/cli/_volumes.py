"""What the commands do differently for volumes (models with
`spatial_dims=3`): the built-in volumes or a volume folder, kind checks
between a model and its inputs, and class-id volumes as `.npy` or NIfTI."""

import gzip
import os
import sys

import numpy as np

from seglayers.cli._common import UsageError, _library_error, listed_files

# Mirrors seglayers.data.volumes.VOLUME_EXTENSIONS and
# seglayers.data.directory.IMAGE_EXTENSIONS, which import TensorFlow: the
# checks here must also run on JAX and PyTorch before anything is loaded.
VOLUME_EXTENSIONS = (".npy", ".nii", ".nii.gz")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_KINDS = {2: ("a 2-D model", "images"), 3: ("a 3-D model", "volumes")}
# The commands' defaults by spatial dims: a run of a few minutes on two CPU
# cores (see README, "What `seglayers train` gives" and "Volumes"). filters
# and depth are for a model with its own encoder; over an --encoder, the
# model's own defaults (e.g. depth 5). Volumes train at 3e-3: in trial runs
# 1e-3 started too slowly for a run of minutes (a choice, not a tuned value).
# `decay`: the rate rises linearly from a hundredth over the first
# `WARMUP_SHARE` of the training steps, then falls along a cosine to a
# hundredth (`seglayers.cli._fit.learning_rate`). The built-in volumes
# cost about a millisecond each to make, so their run sees each of 4,750
# once rather than 480 ten times (the model had begun to learn its 480);
# 250 of the 5,000 validate. The trial runs behind these choices are in
# the README, "Volumes". A --data folder is a fixed set of files: the
# `FOLDER_DEFAULTS` replace those for it.
DEFAULTS = {
    2: dict(
        num_samples=2000,
        size=(64, 64),
        epochs=10,
        batch_size=16,
        filters=16,
        depth=3,
        learning_rate=1e-3,
        decay=False,
        validation_split=0.2,
    ),
    3: dict(
        num_samples=5000,
        size=(24, 24, 24),
        epochs=1,
        batch_size=2,
        filters=16,
        depth=3,
        learning_rate=3e-3,
        decay=True,
        validation_split=0.05,
    ),
}
# --epochs and --validation-split of a --data folder, images or volumes.
FOLDER_DEFAULTS = dict(epochs=10, validation_split=0.2)
# The share of the steps that warm the learning rate up where it `decay`s.
WARMUP_SHARE = 0.04
_SIZE_FLAGS = {
    2: ("image_size", "--image-size H W"),
    3: ("volume_size", "--volume-size D H W"),
}


def resolve_size(args, dims, who):
    """Sets `args.size` from --image-size (images) or --volume-size
    (volumes), or the default of `dims`, and refuses the other flag. `who`
    says why, e.g. "--spatial-dims is 3" or "m.keras is a 3-D model"."""
    name, usage = _SIZE_FLAGS[dims]
    other = _SIZE_FLAGS[5 - dims][0]
    if getattr(args, other, None) is not None:
        raise UsageError(
            f"--{other.replace('_', '-')} is for {_KINDS[5 - dims][1]}, but {who} "
            f"({_KINDS[dims][1]}); give {usage} instead."
        )
    args.size = tuple(getattr(args, name) or DEFAULTS[dims]["size"])


def spatial_dims(model):
    """2 for a model of images, 3 for a model of volumes (input rank 5)."""
    return getattr(model, "spatial_dims", 2)


def _kind_of(path):
    name = path.lower()
    if name.endswith(VOLUME_EXTENSIONS):
        return 3
    return 2 if name.endswith(IMAGE_EXTENSIONS) else None


def check_kind(dims, paths, where, model_path=None):
    """Raises when `paths` (the files of `where`) hold none of what `dims`
    takes (images for 2, volumes for 3) but some of the other kind; notes
    on stderr those of the other kind it leaves out when there are both.
    `model_path`: the model that takes them (evaluate, predict); `None` for
    `seglayers train --spatial-dims`."""
    kinds = {_kind_of(path) for path in paths}
    if 5 - dims not in kinds:
        return
    if dims in kinds:  # Both kinds: the other one is left out, said once.
        others = sorted(path for path in paths if _kind_of(path) == 5 - dims)
        what = _KINDS[dims][0] if model_path is None else model_path
        print(
            f"seglayers: note: {where} also holds {len(others)} "
            f"{_KINDS[5 - dims][1]} ({os.path.basename(others[0])}"
            f"{', ...' if len(others) > 1 else ''}), which {what} does not "
            f"take; they are left out.",
            file=sys.stderr,
        )
        return
    takes, other = _KINDS[dims][1], _KINDS[5 - dims][1]
    if model_path is None:
        raise UsageError(
            f"--spatial-dims {dims} trains on {takes}, but {where} holds "
            f"{other}; pass --spatial-dims {5 - dims} for {other}."
        )
    raise UsageError(
        f"{model_path} is {_KINDS[dims][0]} (it takes {takes}), but {where} "
        f"holds {other}; give it {takes}, or use a model trained with "
        f"--spatial-dims {5 - dims} for {other}."
    )


def check_inputs_kind(dims, inputs, model_path):
    """`check_kind` on each input of predict: a file, or a folder's files."""
    for path in inputs:
        if os.path.isdir(path):
            names = [os.path.join(path, name) for name in os.listdir(path)]
            check_kind(dims, names, path, model_path)
        else:
            check_kind(dims, [path], path, model_path)


def check_folder_kind(dims, directory, model_path=None):
    """`check_kind` on the files of `directory/images` (if it exists)."""
    folder = os.path.join(directory, "images")
    if os.path.isdir(folder):
        names = [os.path.join(folder, name) for name in os.listdir(folder)]
        check_kind(dims, names, folder, model_path)


def load_folder(dims, directory, size, model_path=None, **kwargs):
    """The tf.data pipeline of `directory` (images/ + masks/): images
    resized to `size` (`dims` 2), or volumes resampled to it (`dims` 3).
    `model_path`: as for `check_kind`."""
    import seglayers

    check_folder_kind(dims, directory, model_path)
    try:
        if dims == 3:
            return seglayers.volume_dataset_from_directory(
                directory, volume_size=size, **kwargs
            )
        return seglayers.segmentation_dataset_from_directory(
            directory, image_size=size, **kwargs
        )
    except ValueError as error:
        raise _library_error(error) from None


def volume_files(inputs):
    """The volume files named in `inputs` (files, or folders of volumes)."""
    return listed_files(inputs, VOLUME_EXTENSIONS, "volume", check_files=True)


def volume_stem(path):
    """The file name without its extension: `a.nii.gz` gives `a`."""
    name = os.path.basename(path)
    extension = max((e for e in VOLUME_EXTENSIONS if name.lower().endswith(e)), key=len)
    return name[: -len(extension)]


def check_volume(path):
    """Raises `UsageError` for a volume file that `read_volume` would
    refuse for its shape, from the header alone."""
    from seglayers.data.volumes import _check_dtype, _open

    try:
        volume = _open(path, "volume")
        _check_dtype(volume, "volume", path)
        shape = tuple(volume.shape)
    except (ValueError, ImportError) as error:
        raise _library_error(error) from None
    _check_volume_shape(path, shape)


def _check_volume_shape(path, shape):
    if len(shape) not in (3, 4) or 0 in shape:
        raise UsageError(
            f"The volume {path} has shape {shape}; volumes must be "
            "(depth, height, width) or (depth, height, width, channels), "
            "none of them empty."
        )


def read_volume(path):
    """`(volume (D, H, W, C) float32, NIfTI image or None)`; the NIfTI image
    (header only) carries the affine and header the mask is written with."""
    from seglayers.data.volumes import _nibabel, read_volume_array

    try:
        volume = read_volume_array(path)
        source = None if path.lower().endswith(".npy") else _nibabel(path).load(path)
    except (ValueError, ImportError) as error:
        raise _library_error(error) from None
    _check_volume_shape(path, volume.shape)
    return (volume[..., None] if volume.ndim == 3 else volume), source


def predict_volume(model, volume, volume_size, tiling=True, overlap=0.25):
    """Class ids `(D, H, W)` of one volume at its own size, as
    `predict_mask` does for images: a volume larger than `volume_size`
    along any axis in overlapping tiles (`predict_tiled`), any other resampled
    to `volume_size` (trilinear) and its ids back by nearest neighbour."""
    from seglayers._masks import model_predicted_ids
    from seglayers.data.volumes import _resample
    from seglayers.inference.predict_tiled import predict_tiled

    size = volume.shape[:3]
    if tiling and any(s > t for s, t in zip(size, volume_size)):
        scores = predict_tiled(model, volume, volume_size, overlap=overlap, verbose=0)
        return model_predicted_ids(model, scores[None])[0].astype("int32")
    resampled = _resample(volume, volume_size, linear=True)
    scores = model.predict_on_batch(resampled[None].astype("float32"))
    ids = model_predicted_ids(model, scores)[0]
    return _resample(ids, size, linear=False).astype("int32")


def mask_path(output, path):
    """Where the mask of `path` goes: NIfTI in, NIfTI out."""
    extension = ".npy" if path.lower().endswith(".npy") else ".nii.gz"
    return os.path.join(output, f"{volume_stem(path)}_mask{extension}")


def write_mask(ids, path, source):
    """Writes class ids atomically: `.npy`, or `.nii.gz` with the affine and
    header of `source` (so the mask lies on the scan in any viewer). `ids`
    are unsigned, their type's largest value where a voxel has no class
    (`predict.stored_ids`)."""
    from seglayers._files import atomic_file

    with atomic_file(path, "wb") as f:
        if source is None:
            np.save(f, ids)
            return
        header = source.header.copy()
        header.set_data_dtype(ids.dtype)
        # The scan's geometry stays; what describes its values does not: its
        # display range (a CT's cal_max of 3000 shows ids 0-2 black), intent
        # and description. The mask says it holds labels.
        largest = ids.max(where=ids != np.iinfo(ids.dtype).max, initial=0)
        header["cal_min"], header["cal_max"] = 0, largest
        header.set_intent("label")
        header["descrip"] = b"seglayers predict: class ids"
        image = type(source)(ids, source.affine, header)
        # Stored as the ids themselves: no scaling of the scan's header.
        image.header.set_slope_inter(1, 0)
        f.write(gzip.compress(image.to_bytes(), compresslevel=6))


def check_size(model, args, dims):
    """Refuses an --image-size or --volume-size the model cannot take,
    before any input is read (`predict`, `evaluate`)."""
    flag = "--volume-size" if dims == 3 else "--image-size"
    shown = " ".join(map(str, args.size))
    if getattr(args, _SIZE_FLAGS[dims][0], None) is None:
        shown += " (the default)"
    if min(args.size) < 1:
        raise UsageError(
            f"{flag} must be the size the model trained on, at least 1 on every "
            f"axis; got {shown}."
        )
    try:
        model.compute_output_shape((None, *args.size, model.input_channels))
    except ValueError as error:
        reason = str(error).split(" Received:")[0].rstrip(".")
        raise UsageError(
            f"{args.model} cannot take {flag} {shown}: {reason}. Give the size "
            "it trained on."
        ) from None
