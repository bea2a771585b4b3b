"""The `seglayers` command (also `python -m seglayers`).

A thin front end over the public API: `seglayers train` builds a `UNet`,
trains it on the built-in shapes data set and writes a run folder. Every
error the user can cause ends in one line on stderr and exit status 2.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line, exit 2."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="seglayers",
        description="Semantic segmentation with Keras 3: train a U-Net.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a UNet on the built-in shapes data set",
        description="Trains a UNet on the built-in shapes data set (generated, "
        "nothing is downloaded) and writes RUN_DIR/model.keras, best.keras "
        "(the best epoch by validation mean IoU), history.csv and metrics.json.",
    )
    train.add_argument("--num-classes", type=int, default=4, help="2 to 4 (default 4)")
    train.add_argument("--num-samples", type=int, default=2000, help="images made")
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
    return parser


def _check_train_args(args):
    for name in ("num_samples", "epochs", "batch_size", "filters", "depth"):
        value = getattr(args, name)
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1; got {value}.")
    if not 0 < args.validation_split < 1:
        raise UsageError(
            f"--validation-split must be between 0 and 1, e.g. 0.2; got "
            f"{args.validation_split}."
        )
    n_val = int(args.num_samples * args.validation_split)
    if n_val < 1 or args.num_samples - n_val < 1:
        raise UsageError(
            f"--num-samples {args.num_samples} with --validation-split "
            f"{args.validation_split} leaves an empty training or validation "
            "set; use more samples."
        )
    output = args.output or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    if os.path.isdir(output) and os.listdir(output) and not args.overwrite:
        raise UsageError(
            f"{output} exists and is not empty; choose another --output or "
            "pass --overwrite."
        )
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(
            f"{output} exists and is not a folder; choose another --output."
        )
    return output


def train(args):
    output = _check_train_args(args)
    import keras

    import seglayers
    from seglayers.datasets import shapes

    try:
        images, masks = shapes.load_data(
            args.num_samples, tuple(args.image_size), args.num_classes, args.seed
        )
    except ValueError as error:
        raise UsageError(str(error).split(". Received")[0] + ".") from None
    if args.mixed_precision:
        on_gpu = bool(keras.distribution.list_devices("gpu"))
        keras.config.set_dtype_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    keras.utils.set_random_seed(args.seed)

    split = len(images) - int(len(images) * args.validation_split)
    train_data = (images[:split], masks[:split])
    val_data = (images[split:], masks[split:])
    class_names = list(shapes.CLASS_NAMES[: args.num_classes])

    try:
        model = seglayers.UNet(
            args.num_classes, filters=args.filters, depth=args.depth, rescale=1 / 255
        )
        model.build((None, None, None, 3))
        model.compute_output_shape((None, *args.image_size, 3))  # checks the size
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=seglayers.DiceCrossEntropyLoss(),
        metrics=[
            seglayers.MeanIoU(args.num_classes, class_names=class_names),
            seglayers.PixelAccuracy(args.num_classes),
        ],
    )
    print(
        f"Training UNet(num_classes={args.num_classes}, filters={args.filters}, "
        f"depth={args.depth}): {model.count_params():,} parameters, "
        f"{split} training and {len(images) - split} validation images of "
        f"{args.image_size[0]}x{args.image_size[1]}."
    )

    # Everything is written to a temporary folder beside the run folder and
    # moved into place at the end: a failed run leaves nothing half-written.
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".seglayers-run-", dir=parent)
    try:
        start = time.perf_counter()
        model.fit(
            *train_data,
            validation_data=val_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            verbose=args.verbose,
            callbacks=[
                keras.callbacks.CSVLogger(os.path.join(staging, "history.csv")),
                keras.callbacks.ModelCheckpoint(
                    os.path.join(staging, "best.keras"),
                    monitor="val_mean_iou",
                    mode="max",
                    save_best_only=True,
                ),
            ],
        )
        seconds = time.perf_counter() - start
        model.save(os.path.join(staging, "model.keras"))
        results = evaluate(model, *val_data, class_names, args.batch_size)
        results["training_seconds"] = round(seconds, 1)
        with open(os.path.join(staging, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        _move_into_place(staging, output, args.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print_metrics(results)
    print(
        f"Trained in {seconds:.0f} s. Wrote {output}/: model.keras, best.keras, "
        "history.csv, metrics.json"
    )
    return 0


def evaluate(model, images, masks, class_names, batch_size):
    """Mean IoU, per-class IoU and Dice, pixel accuracy on `(images, masks)`."""
    import keras

    import seglayers

    num_classes = len(class_names)
    metrics = [
        seglayers.MeanIoU(num_classes, class_names=class_names),
        seglayers.MeanDice(num_classes, class_names=class_names),
        seglayers.PixelAccuracy(num_classes),
    ]
    predictions = model.predict(images, batch_size=batch_size, verbose=0)
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
        return train(args)
    except UsageError as error:
        print(f"seglayers: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seglayers: interrupted; nothing was written.", file=sys.stderr)
        return 130
