"""`seglayers predict`: class-id masks and overlays at each image's size."""

import os

from seglayers._masks import num_ids
from seglayers.cli._common import UsageError, _library_error, _load_model


def _image_files(inputs):
    from seglayers.data.directory import IMAGE_EXTENSIONS

    files = []
    for path in inputs:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise UsageError(
                    f"{path} holds no image ({', '.join(IMAGE_EXTENSIONS)})."
                )
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UsageError(f"No such image or folder: {path}.")
    return files


def _read_image(path):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise UsageError(f"Cannot read the image {path}: {error}.") from None


def predict(args):
    import numpy as np

    from seglayers.inference.prediction import predict_mask
    from seglayers.visualization import default_palette, overlay, save_png

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
    files = _image_files(args.inputs)
    images = [_read_image(path) for path in files]  # all checked before writing
    names = [os.path.splitext(os.path.basename(path))[0] for path in files]
    if len(set(names)) != len(names):
        raise UsageError("Two inputs share a file name; predict them separately.")
    targets = [
        os.path.join(args.output, f"{name}_{kind}.png")
        for name in names
        for kind in ("mask", "overlay")
    ]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not args.overwrite:
        raise UsageError(
            f"{existing[0]} exists; choose another --output or pass --overwrite."
        )
    palette = default_palette(num_ids(model.num_classes))
    results = []
    for image in images:
        try:
            mask = predict_mask(
                model,
                image,
                tuple(args.image_size),
                tiling=not args.no_tiling,
                overlap=args.tile_overlap,
            )
        except ValueError as error:  # e.g. a size the model cannot take
            raise _library_error(error) from None
        results.append((mask, overlay(image, mask, palette)))
    # Written only once every prediction is made, each file atomically.
    try:
        os.makedirs(args.output, exist_ok=True)
        for name, (mask, picture) in zip(names, results):
            # A 2-D uint8 array is saved as a single-channel ("L") PNG of ids.
            save_png(
                mask.astype(np.uint8), os.path.join(args.output, f"{name}_mask.png")
            )
            save_png(picture, os.path.join(args.output, f"{name}_overlay.png"))
    except OSError as error:
        raise UsageError(
            f"Cannot write to --output {args.output}: {error.strerror}."
        ) from None
    print(f"Wrote {len(names)} masks and overlays to {args.output}/")
    return 0
