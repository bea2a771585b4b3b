"""The `seglayers` command (also `python -m seglayers`).

A thin front end over the public API:

- `seglayers train` builds a `UNet`, trains it on a folder data set
  (`--data DIR`) or on the built-in shapes data set, and writes a run folder;
- `seglayers evaluate MODEL --data DIR` prints (and with `--json` writes)
  mean IoU, per-class IoU and Dice, and pixel accuracy;
- `seglayers predict MODEL IMAGE_OR_DIR... --output DIR` writes a class-id
  mask and a colour overlay per image, at the image's own size.
- `seglayers export MODEL OUT --format savedmodel|tflite|onnx` writes a
  model for serving that takes images of any height and width.

Every error the user can cause ends in one line on stderr and exit status 2,
and nothing half-written is left in an output folder.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import time

from seglayers._files import atomic_file, make_staging_dir


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line, exit 2."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="seglayers",
        description="Semantic segmentation with Keras 3: train and evaluate a U-Net.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a UNet on a folder data set or the built-in shapes",
        description="Trains a UNet on DIR/images + DIR/masks (--data), or on the "
        "built-in shapes data set (generated, nothing is downloaded), and writes "
        "RUN_DIR/model.keras, best.keras (the best epoch by validation mean IoU), "
        "history.csv, metrics.json and previews/epoch_NNN.png.",
    )
    train.add_argument("--data", metavar="DIR", help="folder with images/ and masks/")
    train.add_argument(
        "--num-classes", type=int, help="classes (needed with --data; shapes: 4)"
    )
    train.add_argument("--ignore-class", type=int, help="id of unlabelled pixels")
    train.add_argument(
        "--num-samples", type=int, default=2000, help="shapes images made"
    )
    train.add_argument(
        "--image-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W")
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--filters", type=int, default=16)
    train.add_argument("--depth", type=int, default=3)
    train.add_argument("--validation-split", type=float, default=0.2)
    train.add_argument(
        "--output", metavar="RUN_DIR", default=None, help="default: runs/<timestamp>"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty RUN_DIR"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 on a GPU, mixed_bfloat16 on a CPU",
    )
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="Keras progress: 0 silent, 1 bar, 2 a line per epoch",
    )
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a saved model on a folder data set",
        description="Loads MODEL (.keras), reads DIR/images + DIR/masks and "
        "prints mean IoU, per-class IoU and Dice, and pixel accuracy.",
    )
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("--data", metavar="DIR", required=True)
    evaluate.add_argument("--num-classes", type=int, help="default: the model's")
    evaluate.add_argument("--ignore-class", type=int)
    evaluate.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=("H", "W"),
        help="size images are resized to (use the training size)",
    )
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--json", metavar="FILE", help="also write the results")
    predict = commands.add_parser(
        "predict",
        help="write predicted masks for images",
        description="Writes, for every image (files, or the images in folders), "
        "OUTPUT/<name>_mask.png (class ids, at the image's own size) and "
        "OUTPUT/<name>_overlay.png (the classes in colour over the image).",
    )
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+")
    predict.add_argument("--output", metavar="DIR", required=True)
    predict.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=("H", "W"),
        help="size the model sees (use the training size); larger images are "
        "predicted at their own size in overlapping tiles of this size",
    )
    predict.add_argument(
        "--no-tiling",
        action="store_true",
        help="resize every image to --image-size instead of tiling large ones",
    )
    predict.add_argument(
        "--tile-overlap",
        type=float,
        default=0.25,
        metavar="F",
        help="fraction of a tile shared with its neighbour (default 0.25)",
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace existing files in DIR"
    )
    export = commands.add_parser(
        "export",
        help="export a saved model for serving at any image size",
        description="Loads MODEL (.keras) and writes OUT: a TensorFlow "
        "SavedModel folder, a .tflite file (built-in TFLite ops only) or an "
        ".onnx file, each taking images of any height and width "
        "(onnx needs: pip install 'seglayers[export]').",
    )
    export.add_argument("model", metavar="MODEL")
    export.add_argument("output", metavar="OUT")
    export.add_argument(
        "--format", choices=("savedmodel", "tflite", "onnx"), default="savedmodel"
    )
    export.add_argument("--overwrite", action="store_true", help="replace OUT")
    return parser


def _check_positive(args, names):
    for name in names:
        value = getattr(args, name)
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1; got {value}.")


def _check_train_args(args):
    _check_positive(args, ("num_samples", "epochs", "batch_size", "filters", "depth"))
    if not 0 < args.validation_split < 1:
        raise UsageError(
            f"--validation-split must be between 0 and 1, e.g. 0.2; got "
            f"{args.validation_split}."
        )
    if args.data is None:
        n_val = int(args.num_samples * args.validation_split)
        if n_val < 1 or args.num_samples - n_val < 1:
            raise UsageError(
                f"--num-samples {args.num_samples} with --validation-split "
                f"{args.validation_split} leaves an empty training or validation "
                "set; use more samples."
            )
    elif args.num_classes is None:
        raise UsageError("--data needs --num-classes, the number of classes.")
    if args.data is None and args.num_classes is None:
        args.num_classes = 4  # The shapes: background, circle, square, triangle.
    _check_ignore_class(args)
    output = args.output or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(
            f"{output} exists and is not a folder; choose another --output."
        )
    if os.path.isdir(output) and os.listdir(output) and not args.overwrite:
        raise UsageError(
            f"{output} exists and is not empty; choose another --output or "
            "pass --overwrite."
        )
    return output


# The library's arguments that the command line sets, and their flags.
_FLAGS = {
    "num_classes": "--num-classes",
    "ignore_class": "--ignore-class",
    "image_size": "--image-size",
    "batch_size": "--batch-size",
    "validation_split": "--validation-split",
    "num_samples": "--num-samples",
    "filters": "--filters",
    "depth": "--depth",
    "seed": "--seed",
}


def _as_flags(text):
    """`ignore_class`=1 and ignore_class=1 become --ignore-class 1: the user
    typed flags, and the library's messages name its arguments."""
    names = "|".join(_FLAGS)

    def flag(match, then=""):
        return _FLAGS[match.group(1)] + then

    text = re.sub(rf"`({names})`\s*=\s*", lambda m: flag(m, " "), text)
    text = re.sub(rf"(?<![\w.`-])({names})=", lambda m: flag(m, " "), text)
    return re.sub(rf"`({names})`", flag, text)


def _check_ignore_class(args):
    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(
            f"--num-classes must be at least 1 (1: binary masks, ids 0 and 1); "
            f"got {args.num_classes}."
        )
    classes = max(args.num_classes or 2, 2)
    if args.ignore_class is not None and 0 <= args.ignore_class < classes:
        raise UsageError(
            f"--ignore-class {args.ignore_class} is also a class id (0 to "
            f"{classes - 1}), so that class would never be learned or counted; "
            "give the id of unlabelled pixels only (often 255)."
        )


def _library_error(error):
    """One line from an error raised in seglayers or in a tf.data pipeline,
    naming the flags rather than the library's arguments."""
    text = str(error)
    # Errors raised inside tf.data (e.g. a bad mask) arrive wrapped, with the
    # original `ValueError: ...` line somewhere in the text.
    found = re.search(r"ValueError: (.+)", text)
    line = found.group(1) if found else text.strip().splitlines()[0]
    return UsageError(_as_flags(line.strip()))


def _load_data(args):
    """`(train, validation, class_names)` from --data or the shapes set."""
    if args.data is not None:
        import seglayers

        try:
            train, val = seglayers.segmentation_dataset_from_directory(
                args.data,
                image_size=tuple(args.image_size),
                batch_size=args.batch_size,
                num_classes=args.num_classes,
                ignore_class=args.ignore_class,
                validation_split=args.validation_split,
                subset="both",
                seed=args.seed,
            )
        except ValueError as error:
            raise _library_error(error) from None
        # One sigmoid channel (--num-classes 1) is two classes, 0 and 1.
        return train, val, [str(i) for i in range(max(args.num_classes, 2))]

    from seglayers.datasets import shapes

    args.num_classes = args.num_classes or 4
    try:
        images, masks = shapes.load_data(
            args.num_samples, tuple(args.image_size), args.num_classes, args.seed
        )
    except ValueError as error:
        raise _library_error(error) from None
    split = len(images) - int(len(images) * args.validation_split)
    return (
        (images[:split], masks[:split]),
        (images[split:], masks[split:]),
        list(shapes.CLASS_NAMES[: args.num_classes]),
    )


def train(args):
    output = _check_train_args(args)
    import keras

    import seglayers

    if keras.backend.backend() not in ("tensorflow", "jax", "torch"):
        raise UsageError(
            f"The {keras.backend.backend()} backend of Keras cannot train; set "
            "KERAS_BACKEND to tensorflow, jax or torch."
        )

    train_data, val_data, class_names = _load_data(args)
    if args.mixed_precision:
        on_gpu = bool(keras.distribution.list_devices("gpu"))
        keras.config.set_dtype_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    keras.utils.set_random_seed(args.seed)
    try:
        model = seglayers.UNet(
            args.num_classes, filters=args.filters, depth=args.depth, rescale=1 / 255
        )
        model.build((None, None, None, 3))
        model.compute_output_shape((None, *args.image_size, 3))  # checks the size
    except (ValueError, TypeError) as error:
        raise _library_error(error) from None
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=seglayers.DiceCrossEntropyLoss(ignore_class=args.ignore_class),
        metrics=[
            seglayers.MeanIoU(
                args.num_classes,
                ignore_class=args.ignore_class,
                class_names=class_names,
            ),
            seglayers.PixelAccuracy(args.num_classes, ignore_class=args.ignore_class),
        ],
    )
    source = args.data or "the shapes data set"
    print(
        f"Training UNet(num_classes={args.num_classes}, filters={args.filters}, "
        f"depth={args.depth}): {model.count_params():,} parameters, on {source} "
        f"at {args.image_size[0]}x{args.image_size[1]}."
    )
    if isinstance(train_data, tuple):
        fit_data = dict(x=train_data[0], y=train_data[1], batch_size=args.batch_size)
    else:
        # The loader shuffles; Keras warns if fit's shuffle is left on.
        fit_data = dict(x=train_data, shuffle=False)

    # Everything is written to a temporary folder beside the run folder and
    # moved into place at the end: a failed run leaves nothing half-written.
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"Cannot create the folder of --output {output}: {error.strerror}."
        ) from None
    staging = make_staging_dir(parent, ".seglayers-run-")
    csv_logger = keras.callbacks.CSVLogger(os.path.join(staging, "history.csv"))
    try:
        start = time.perf_counter()
        try:
            model.fit(
                **fit_data,
                validation_data=val_data,
                epochs=args.epochs,
                verbose=args.verbose,
                callbacks=[
                    csv_logger,
                    seglayers.MaskVisualizer(
                        _preview_samples(val_data),
                        output_dir=os.path.join(staging, "previews"),
                        class_names=class_names,
                        ignore_class=args.ignore_class,
                        max_samples=4,
                    ),
                    keras.callbacks.ModelCheckpoint(
                        os.path.join(staging, "best.keras"),
                        monitor="val_mean_iou",
                        mode="max",
                        save_best_only=True,
                    ),
                ],
            )
        except Exception as error:
            if "ValueError: " in str(error):  # A bad file met inside tf.data.
                raise _library_error(error) from None
            raise
        seconds = time.perf_counter() - start
        model.save(os.path.join(staging, "model.keras"))
        results = measure(
            model, val_data, class_names, args.ignore_class, args.batch_size
        )
        results["training_seconds"] = round(seconds, 1)
        with open(os.path.join(staging, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        _move_into_place(staging, output, args.overwrite)
    except BaseException:
        # CSVLogger closes its file only in on_train_end, which a failed fit
        # never reaches.
        csv_file = getattr(csv_logger, "csv_file", None)
        if csv_file is not None and not csv_file.closed:
            csv_file.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print_metrics(results)
    print(
        f"Trained in {seconds:.0f} s. Wrote {output}/: model.keras, best.keras, "
        "history.csv, metrics.json, previews/"
    )
    return 0


def _preview_samples(data):
    if isinstance(data, tuple):
        return data[0][:4], data[1][:4]
    return data.take(1)


def _batches(data, batch_size):
    if isinstance(data, tuple):
        images, masks = data
        for i in range(0, len(images), batch_size):
            yield images[i : i + batch_size], masks[i : i + batch_size]
    else:
        yield from data


def measure(model, data, class_names, ignore_class, batch_size):
    """Mean IoU, per-class IoU and Dice, pixel accuracy of `model` on `data`
    (an `(images, masks)` pair of arrays, or a dataset of such batches)."""
    import keras

    import seglayers

    num_classes = len(class_names)
    metrics = [
        seglayers.MeanIoU(num_classes, ignore_class, class_names=class_names),
        seglayers.MeanDice(num_classes, ignore_class, class_names=class_names),
        seglayers.PixelAccuracy(num_classes, ignore_class),
    ]
    for images, masks in _batches(data, batch_size):
        predictions = model.predict_on_batch(images)
        for metric in metrics:
            metric.update_state(masks, predictions)
    results = {}
    for metric in metrics:
        value = metric.result()
        value = value if isinstance(value, dict) else {metric.name: value}
        results.update(
            {k: float(keras.ops.convert_to_numpy(v)) for k, v in value.items()}
        )
    return results


def evaluate(args):
    _check_positive(args, ("batch_size",))
    model = _load_model(args.model)
    num_classes = args.num_classes or model.num_classes
    if num_classes != model.num_classes:
        raise UsageError(
            f"{args.model} predicts {model.num_classes} classes; got "
            f"--num-classes {num_classes}."
        )
    args.num_classes = num_classes
    _check_ignore_class(args)
    import seglayers

    try:
        data = seglayers.segmentation_dataset_from_directory(
            args.data,
            image_size=tuple(args.image_size),
            batch_size=args.batch_size,
            num_classes=num_classes,
            ignore_class=args.ignore_class,
            shuffle=False,
        )
        class_names = [str(i) for i in range(max(num_classes, 2))]
        results = measure(model, data, class_names, args.ignore_class, None)
    except ValueError as error:
        raise _library_error(error) from None
    except Exception as error:
        if "ValueError: " in str(error):
            raise _library_error(error) from None
        raise
    print_metrics(results)
    if args.json:
        _write_json_atomically(args.json, results)
        print(f"Wrote {args.json}")
    return 0


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
    from PIL import Image

    import seglayers
    from seglayers.callbacks.mask_visualizer import predicted_ids
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
    palette = default_palette(max(model.num_classes, 2))
    height, width = args.image_size
    results = []
    for image in images:
        if not args.no_tiling and (image.shape[0] > height or image.shape[1] > width):
            # At the image's own resolution, in tiles of the training size.
            probabilities = seglayers.predict_tiled(
                model,
                image.astype("float32"),
                (height, width),
                overlap=args.tile_overlap,
                verbose=0,
            )
            mask = predicted_ids(probabilities[None])[0].astype(np.uint8)
        else:
            resized = np.asarray(
                Image.fromarray(image).resize((width, height), Image.BILINEAR),
                "float32",
            )
            ids = predicted_ids(model.predict(resized[None], verbose=0))[0]
            # Back to the image's own size with nearest neighbour: no new labels.
            mask = Image.fromarray(ids.astype(np.uint8)).resize(
                (image.shape[1], image.shape[0]), Image.NEAREST
            )
            mask = np.asarray(mask)
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


def export(args):
    output = args.output.rstrip("/") or args.output
    if os.path.lexists(output) and not args.overwrite:
        raise UsageError(f"{output} exists; choose another OUT or pass --overwrite.")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError(f"No such folder for OUT: {parent}.")
    model = _load_model(args.model)
    from seglayers.inference.export import FORMATS, any_size_signature

    # Exported into a temporary folder beside OUT, then moved into place: a
    # failed export leaves nothing half-written, and OUT is replaced only by
    # a complete one.
    staging = make_staging_dir(parent, ".seglayers-export-")
    try:
        staged = os.path.join(staging, "model")
        if args.format != "savedmodel":
            staged += "." + args.format  # Keras wants .tflite for LiteRT
        try:
            model.export(staged, format=FORMATS[args.format], verbose=False)
        except ImportError as error:
            raise UsageError(
                f"--format {args.format} needs packages that are not installed "
                f"({error}); install them with pip install 'seglayers[export]'."
            ) from None
        except ValueError as error:
            # E.g. TFLite export on the JAX backend.
            line = str(error).strip().splitlines()[0]
            raise UsageError(f"Cannot export as {args.format}: {line}") from None
        if os.path.isdir(output) and not os.path.islink(output):
            shutil.rmtree(output)
        elif os.path.lexists(output):
            os.remove(output)
        os.replace(staged, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shape = any_size_signature(model)[0].shape
    print(f"Wrote {output} ({args.format}, input shape {shape}).")
    return 0


def _load_model(path):
    import zipfile

    import keras

    import seglayers

    if not os.path.isfile(path):
        raise UsageError(f"No such model file: {path}.")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(
            f"{path} is not a readable .keras model ({type(error).__name__}: "
            f"{reason[:200]}). Pass the model.keras that `seglayers train` wrote."
        ) from None
    if not isinstance(model, seglayers.UNet):
        raise UsageError(
            f"{path} holds a {type(model).__name__}, not a seglayers UNet. Pass "
            "the model.keras that `seglayers train` wrote."
        )
    return model


def _write_json_atomically(path, results):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"No such folder for --json: {folder}.")
    if os.path.isdir(path):
        raise UsageError(f"--json {path} is a folder; give a file name.")
    with atomic_file(path) as f:
        json.dump(results, f, indent=2)


def print_metrics(results):
    names = [key.split("/", 1)[1] for key in results if key.startswith("iou/")]
    width = max(len(n) for n in names + ["class"])
    print(f"\n{'class':<{width}}  {'IoU':>6}  {'Dice':>6}")
    for name in names:
        print(
            f"{name:<{width}}  {results['iou/' + name]:6.3f}  "
            f"{results['dice/' + name]:6.3f}"
        )
    print(f"{'mean':<{width}}  {results['mean_iou']:6.3f}  {results['mean_dice']:6.3f}")
    print(f"pixel accuracy: {results['pixel_accuracy']:.3f}")


def _move_into_place(staging, output, overwrite):
    if os.path.isdir(output):
        if os.listdir(output) and not overwrite:
            raise UsageError(
                f"{output} was filled by something else during training; "
                "nothing was written. Run again with another --output."
            )
        shutil.rmtree(output)
    os.replace(staging, output)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        commands = {
            "train": train,
            "evaluate": evaluate,
            "predict": predict,
            "export": export,
        }
        return commands[args.command](args)
    except UsageError as error:
        print(f"seglayers: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seglayers: interrupted; nothing was written.", file=sys.stderr)
        return 130
