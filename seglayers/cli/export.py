"""`seglayers export`: SavedModel, TFLite or ONNX for serving at any size."""

import os
import shutil

from seglayers._files import make_staging_dir
from seglayers.cli._common import (
    UsageError,
    _load_model,
    check_output_apart,
)

# The format an extension of OUT names; any other name is a SavedModel folder.
EXTENSIONS = {".tflite": "tflite", ".onnx": "onnx"}


def _format(output, given):
    """--format `given`, or when left out the one OUT's extension names;
    refuses a `given` format that the extension contradicts."""
    stem, extension = os.path.splitext(output)
    if os.path.basename(output).lower() in EXTENSIONS:
        # splitext(".onnx") has no extension: a hidden SavedModel folder.
        raise UsageError(
            f"OUT {output} is an extension without a name; name the file, e.g. "
            f"unet{os.path.basename(output).lower()}."
        )
    named = EXTENSIONS.get(extension.lower())
    if given is None:
        return named or "savedmodel"
    if named is not None and named != given:
        fitting = stem if given == "savedmodel" else f"{stem}.{given}"
        raise UsageError(
            f"--format {given} does not match OUT {output}, whose extension "
            f"{extension} is --format {named}; name OUT {fitting}, or leave "
            "--format out."
        )
    return given


def _check_replaceable(output):
    """--overwrite replaces a file, a link or an earlier SavedModel export,
    never a folder of other files."""
    if (
        os.path.isdir(output)
        and not os.path.islink(output)
        and os.listdir(output)
        and not os.path.isfile(os.path.join(output, "saved_model.pb"))
    ):
        raise UsageError(
            f"OUT {output} is a folder that holds no SavedModel (no "
            "saved_model.pb), so --overwrite does not replace it; choose "
            "another OUT."
        )


def export(args):
    output = args.output.rstrip("/") or args.output
    args.format = _format(output, args.format)
    example = (
        "unet_savedmodel" if args.format == "savedmodel" else f"unet.{args.format}"
    )
    check_output_apart(
        "OUT",
        output,
        [("MODEL", args.model)],
        f"give the export a name of its own, e.g. {example}.",
    )
    if os.path.lexists(output):
        if not args.overwrite:
            raise UsageError(
                f"{output} exists; choose another OUT or pass --overwrite."
            )
        _check_replaceable(output)
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
