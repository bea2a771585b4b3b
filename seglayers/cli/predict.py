"""`seglayers predict`: class-id masks and overlays at each image's size;
class-id volumes (`.npy`, or NIfTI as the input) for a model of volumes."""

import contextlib
import os

from seglayers._masks import num_ids
from seglayers.cli import _volumes
from seglayers.cli._common import (
    UsageError,
    _library_error,
    _load_model,
    listed_files,
)


def _image_files(inputs):
    from seglayers.data.directory import IMAGE_EXTENSIONS

    return listed_files(inputs, IMAGE_EXTENSIONS, "image")


def _read_image(path):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                # 16-bit grey: its high bytes, as TensorFlow's decoder in the
                # loader (train, evaluate) reads it; Pillow's convert clips
                # it, so anything from 255 up was white.
                grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[..., None], 3, -1)
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise UsageError(f"Cannot read the image {path}: {error}.") from None


def predict(args):
    if not 0 <= args.tile_overlap < 1:
        raise UsageError(
            f"--tile-overlap must be in [0, 1), e.g. 0.25; got {args.tile_overlap}."
        )
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(
            f"--output {args.output} is a file; give a folder for the masks "
            "and overlays."
        )
    model = _load_model(args.model)
    dims = _volumes.spatial_dims(model)
    _volumes.resolve_size(args, dims, f"{args.model} is a {dims}-D model")
    _volumes.check_size(model, args, dims)
    _volumes.check_inputs_kind(dims, args.inputs, args.model)
    kind = _VOLUMES if dims == 3 else _IMAGES
    files = kind.files(args.inputs)
    for path in files:  # from the headers: a bad file stops the run at once
        kind.check(path)
    names = [kind.stem(path) for path in files]
    if len(set(names)) != len(names):
        raise UsageError("Two inputs share a file name; predict them separately.")
    targets = [kind.targets(args.output, path) for path in files]
    _check_inputs_kept(files, targets)
    folders = [t for paths in targets for t in paths if os.path.isdir(t)]
    if folders:  # --overwrite replaces files, never a folder
        raise UsageError(
            f"{folders[0]} is a folder; move it, or choose another --output."
        )
    existing = [t for paths in targets for t in paths if os.path.exists(t)]
    if existing and not args.overwrite:
        raise UsageError(
            f"{existing[0]} exists; choose another --output or pass --overwrite."
        )
    _predict_all(model, kind, files, targets, args)
    print(f"Wrote {len(names)} {kind.written} to {args.output}/")
    return 0


def _predict_all(model, kind, files, targets, args):
    """Reads, predicts and stages one input at a time (memory holds one
    input and its result, not the whole folder: a folder of CT scans would
    not fit), and moves the staged files to their `targets` only once every
    prediction is made: a failed run writes nothing."""
    import shutil

    from seglayers._files import make_staging_dir

    # The top-most folder of --output that does not exist yet: removed again
    # if the run fails, with the folders made inside it.
    created, parent = None, os.path.abspath(args.output)
    while not os.path.exists(parent):
        created, parent = parent, os.path.dirname(parent)
    try:
        os.makedirs(args.output, exist_ok=True)
        staging = make_staging_dir(args.output, ".seglayers-predict-")
    except OSError as error:
        raise UsageError(
            f"Cannot write to --output {args.output}: {error.strerror or error}."
        ) from None
    done, moved = False, 0
    try:
        staged = []
        for path, paths in zip(files, targets):
            item = kind.read(path)
            try:
                result = kind.predict(model, item, args)
            except ValueError as error:  # e.g. channels the model does not take
                raise UsageError(
                    f"Cannot predict {path}: {_library_error(error)}"
                ) from None
            temporary = [os.path.join(staging, os.path.basename(t)) for t in paths]
            kind.write(temporary, item, result, model)
            staged += zip(temporary, paths)
        for temporary, target in staged:
            os.replace(temporary, target)
            moved += 1
        done = True
    except OSError as error:
        written = f" ({moved} of {len(staged)} files were written)" if moved else ""
        raise UsageError(
            f"Cannot write {error.filename or args.output}: "
            f"{error.strerror or error}{written}."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None and not done and not moved:
            # Only empty folders: another process may have written there.
            for folder in _folders_between(os.path.abspath(args.output), created):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _folders_between(folder, top):
    """`folder` and each folder above it, up to and including `top`."""
    while True:
        yield folder
        if folder == top or os.path.dirname(folder) == folder:
            return
        folder = os.path.dirname(folder)


def _check_inputs_kept(files, targets):
    """Refuses to write a mask or overlay over an input, even with
    --overwrite: e.g. a second run over a folder that holds the first one's
    masks, with --output that folder."""

    # A file is written atomically, by a rename onto its name: what it would
    # replace is the entry of that name in that folder (a link, not what it
    # points to).
    def entry(path):
        folder, name = os.path.split(os.path.abspath(path))
        return os.path.realpath(folder), name

    read = {entry(path) for path in files}
    for target in (t for paths in targets for t in paths):
        if entry(target) in read:
            raise UsageError(
                f"{target} is an input, and predicting would replace it; give "
                "an --output apart from the inputs."
            )


class _IMAGES:
    """Images in, `<name>_mask.png` and `<name>_overlay.png` out."""

    files, read, written = _image_files, _read_image, "masks and overlays"

    def stem(path):
        return os.path.splitext(os.path.basename(path))[0]

    def check(path):
        from PIL import Image

        try:
            with Image.open(path):  # the header only
                pass
        except Exception as error:
            raise UsageError(f"Cannot read the image {path}: {error}.") from None

    def targets(output, path):
        name = _IMAGES.stem(path)
        return [os.path.join(output, f"{name}_{k}.png") for k in ("mask", "overlay")]

    def predict(model, image, args):
        from seglayers.inference.prediction import predict_mask

        return predict_mask(
            model,
            image,
            args.size,
            tiling=not args.no_tiling,
            overlap=args.tile_overlap,
        )

    def write(paths, image, mask, model):
        from seglayers.visualization import default_palette, overlay, save_png

        palette = default_palette(num_ids(model.num_classes))
        # A single-channel PNG of ids: 8-bit ("L") or 16-bit.
        save_png(stored_ids(mask, model.num_classes), paths[0])
        save_png(overlay(image, mask, palette), paths[1])


class _VOLUMES:
    """Volumes in, `<name>_mask.npy` (or `.nii.gz` for NIfTI) out."""

    files, read, written = _volumes.volume_files, _volumes.read_volume, "masks"
    stem = _volumes.volume_stem

    check = _volumes.check_volume

    def targets(output, path):
        return [_volumes.mask_path(output, path)]

    def predict(model, item, args):
        return _volumes.predict_volume(
            model,
            item[0],
            args.size,
            tiling=not args.no_tiling,
            overlap=args.tile_overlap,
        )

    def write(paths, item, ids, model):
        _volumes.write_mask(stored_ids(ids, model.num_classes), paths[0], item[1])


def stored_ids(ids, num_classes):
    """Predicted `ids` as a mask file stores them, images and volumes alike:
    8 bits for up to 255 classes, else 16 (a cast to uint8 wrote id 300 as
    44). A pixel with no class (a NaN score, -1) gets the type's largest
    value, 255 in 8 bits, which no class has."""
    import numpy as np

    dtype = np.uint8 if num_ids(num_classes) <= 255 else np.uint16
    return np.where(ids < 0, np.iinfo(dtype).max, ids).astype(dtype)
