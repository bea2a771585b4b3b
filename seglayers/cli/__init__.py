"""The `seglayers` command (also `python -m seglayers`).

A thin front end over the public API:

- `seglayers train` builds a model (`--model unet|unetplusplus|fpn|
  deeplabv3plus`, over its own encoder or `--encoder NAME`), trains it on a
  folder data set (`--data DIR`) or on the built-in shapes data set, and
  writes a run folder; `--spatial-dims 3` trains a model of volumes (unet,
  unetplusplus) on a volume folder or the built-in volumes;
- `seglayers evaluate MODEL --data DIR` prints (and with `--json` writes)
  mean IoU, per-class IoU and Dice, and pixel accuracy;
- `seglayers predict MODEL IMAGE_OR_DIR... --output DIR` writes a class-id
  mask and a colour overlay per image, at the image's own size (for a model
  of volumes: a class-id volume per volume, `.npy`, or `.nii.gz` with the
  input's affine and header for NIfTI input).
- `seglayers export MODEL OUT --format savedmodel|tflite|onnx` writes a
  model for serving that takes images of any height and width (the format
  is OUT's extension when --format is left out: `.tflite`, `.onnx`, or a
  SavedModel folder for any other name).

MODEL is the `.keras` file of any `seglayers.SegmentationModel` (a `UNet`
or another architecture). The work is done by the library:
`seglayers.inference.evaluate_segmentation` and `predict_mask`, and
`model.export`.

Every error the user can cause ends in one line on stderr and exit status 2,
and nothing half-written is left in an output folder. `--overwrite` replaces
only what the command writes (train: the run's own files, not the rest of
RUN_DIR); no command writes over its inputs (train's --data, predict's
images, evaluate's and export's MODEL) or empties the current folder.
"""

import argparse
import importlib
import sys

# `_library_error` is read by the tests.
from seglayers.cli._common import UsageError, _library_error  # noqa: F401
from seglayers.cli._volumes import DEFAULTS as _DEFAULTS
from seglayers.cli._volumes import FOLDER_DEFAULTS as _FOLDER_DEFAULTS
from seglayers.cli.train import MODELS


def _size(dims):
    return "x".join(map(str, _DEFAULTS[dims]["size"]))


def _both(name):
    """A default of train for images and for volumes, for the help."""
    return f"{_DEFAULTS[2][name]}, volumes {_DEFAULTS[3][name]}"


def _parser():
    parser = argparse.ArgumentParser(
        prog="seglayers",
        description="Semantic segmentation with Keras 3: train a U-Net; evaluate, "
        "predict with or export any saved seglayers model.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a model on a folder data set or the built-in shapes",
        description="Trains a model (--model, a UNet by default) on "
        "DIR/images + DIR/masks (--data), or on the "
        "built-in shapes data set (generated, nothing is downloaded), and writes "
        "RUN_DIR/model.keras, best.keras (the best epoch by validation mean IoU), "
        "history.csv, metrics.json and previews/epoch_NNN.png. With "
        "--spatial-dims 3: volumes (.npy, NIfTI) in DIR, or the built-in "
        "volumes (spheres, cubes, tori); previews show the central slice.",
    )
    train.add_argument("--data", metavar="DIR", help="folder with images/ and masks/")
    train.add_argument(
        "--spatial-dims",
        type=int,
        choices=(2, 3),
        default=2,
        help="2: images (default); 3: volumes, with --model unet or unetplusplus",
    )
    train.add_argument(
        "--num-classes",
        type=int,
        help="classes (needed with --data; shapes and volumes: 4)",
    )
    train.add_argument("--ignore-class", type=int, help="id of unlabelled pixels")
    train.add_argument(
        "--num-samples",
        type=int,
        help=f"shapes images made (default {_DEFAULTS[2]['num_samples']}) or "
        f"volumes made (default {_DEFAULTS[3]['num_samples']})",
    )
    train.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help=f"images are made or resized to this (default {_size(2)})",
    )
    train.add_argument(
        "--volume-size",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        help=f"with --spatial-dims 3: volumes are made or resampled to this "
        f"(default {_size(3)})",
    )
    train.add_argument(
        "--epochs",
        type=int,
        help=f"default {_DEFAULTS[2]['epochs']}; for the built-in volumes "
        f"{_DEFAULTS[3]['epochs']}, for a --data folder {_FOLDER_DEFAULTS['epochs']}",
    )
    train.add_argument("--batch-size", type=int, help=f"default {_both('batch_size')}")
    train.add_argument("--model", choices=tuple(MODELS), default="unet")
    train.add_argument(
        "--encoder",
        metavar="NAME",
        help="a pretrained-style encoder from seglayers.models.encoders.ENCODERS "
        "(e.g. resnet50, mobilenetv3small; random weights); default: the model's "
        "own (unet, unetplusplus) or resnet50 (fpn, deeplabv3plus)",
    )
    train.add_argument(
        "--filters",
        type=int,
        help="top-level channels of unet and unetplusplus (default "
        f"{_both('filters')})",
    )
    train.add_argument(
        "--depth",
        type=int,
        help=f"poolings of unet and unetplusplus (default {_both('depth')}, or 5 "
        "over an --encoder); levels of fpn (3 to 5, default 5)",
    )
    train.add_argument(
        "--validation-split",
        type=float,
        help="share of the data held out to validate (default "
        f"{_FOLDER_DEFAULTS['validation_split']}; for the built-in volumes "
        f"{_DEFAULTS[3]['validation_split']})",
    )
    train.add_argument(
        "--output", metavar="RUN_DIR", default=None, help="default: runs/<timestamp>"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty RUN_DIR, replacing only the run's own files "
        "(model.keras, best.keras, history.csv, metrics.json, previews/); "
        "anything else there is kept",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed_float16 on a GPU; mixed_bfloat16 on a CPU, faster there only "
        "with bfloat16 units (e.g. AVX512_BF16 or AMX)",
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
        description="Loads MODEL (a .keras file of any seglayers model, such as "
        "a UNet), reads DIR/images + DIR/masks (images, or volumes for a "
        "model of volumes) and "
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
        metavar=("H", "W"),
        help=f"size images are resized to (use the training size; default {_size(2)})",
    )
    evaluate.add_argument(
        "--volume-size",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        help=f"for a model of volumes: size volumes are resampled to (use the "
        f"training size; default {_size(3)})",
    )
    evaluate.add_argument(
        "--batch-size", type=int, help=f"default {_both('batch_size')}"
    )
    evaluate.add_argument("--json", metavar="FILE", help="also write the results")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace an existing --json FILE"
    )
    predict = commands.add_parser(
        "predict",
        help="write predicted masks for images",
        description="Loads MODEL (a .keras file of any seglayers model) and "
        "writes, for every image (files, or the images in folders), "
        "OUTPUT/<name>_mask.png (class ids, at the image's own size) and "
        "OUTPUT/<name>_overlay.png (the classes in colour over the image). "
        "For a model of volumes, every volume (.npy, .nii, .nii.gz) gets "
        "OUTPUT/<name>_mask.npy, or <name>_mask.nii.gz with the input's "
        "affine and header when the input is NIfTI: class ids at the "
        "volume's own size.",
    )
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+")
    predict.add_argument("--output", metavar="DIR", required=True)
    predict.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help=f"size the model sees (use the training size; default {_size(2)}); "
        "larger images are predicted at their own size in overlapping tiles of "
        "this size",
    )
    predict.add_argument(
        "--volume-size",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        help=f"the same for a model of volumes (default {_size(3)})",
    )
    predict.add_argument(
        "--no-tiling",
        action="store_true",
        help="resize every image to --image-size (volume to --volume-size) "
        "instead of tiling large ones",
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
        description="Loads MODEL (a .keras file of any seglayers model) and "
        "writes OUT: a TensorFlow "
        "SavedModel folder, a .tflite file (built-in TFLite ops only) or an "
        ".onnx file, each taking images of any height and width "
        "(onnx needs: pip install 'seglayers[export]'). The format is "
        "OUT's extension unless --format is given: OUT.tflite is tflite, "
        "OUT.onnx is onnx, any other name a SavedModel folder.",
    )
    export.add_argument("model", metavar="MODEL")
    export.add_argument("output", metavar="OUT")
    export.add_argument(
        "--format",
        choices=("savedmodel", "tflite", "onnx"),
        help="default: from OUT's extension (.tflite: tflite, .onnx: onnx, "
        "otherwise savedmodel); one that OUT's extension contradicts is refused",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT: a file or an earlier SavedModel export, never a "
        "folder of other files",
    )
    return parser


# Arguments that name files or folders, as the help shows them.
_PATHS = {
    "model": "MODEL",
    "inputs": "IMAGE_OR_DIR",
    "data": "--data",
    "json": "--json",
}


def _check_not_empty(args):
    """Refuses an empty path (a shell variable left unset): `--json ""` was
    skipped without a word, train's `--output ""` became runs/<timestamp>."""
    paths = {**_PATHS, "output": "OUT" if args.command == "export" else "--output"}
    for name, flag in paths.items():
        values = getattr(args, name, None)
        for value in values if isinstance(values, list) else [values]:
            if value == "":
                raise UsageError(
                    f"{flag} is empty; give a path (is a shell variable unset?)."
                )


def main(argv=None):
    """Runs the command line `argv` (default: `sys.argv[1:]`); returns the
    exit status: 0, or 2 after a one-line error, or 130 on Ctrl-C."""
    args = _parser().parse_args(argv)
    from seglayers._backend import KERAS_ERROR

    if KERAS_ERROR is not None:  # `--help` works all the same
        print(f"seglayers: error: {KERAS_ERROR}", file=sys.stderr)
        return 2
    try:
        _check_not_empty(args)
        module = importlib.import_module(f"seglayers.cli.{args.command}")
        return getattr(module, args.command)(args)
    except UsageError as error:
        print(f"seglayers: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seglayers: interrupted; nothing was written.", file=sys.stderr)
        return 130
