"""What the commands share: usage errors in one line, flag names in
messages, loading a model, keeping outputs apart from the inputs, writing
files atomically, printing the metrics."""

import json
import os
import re
import shutil

from seglayers._files import atomic_file


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line, exit 2."""


def _check_positive(args, names):
    for name in names:
        value = getattr(args, name)
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1; got {value}.")


_FLAGS = {
    "num_classes": "--num-classes",
    "ignore_class": "--ignore-class",
    "image_size": "--image-size",
    "volume_size": "--volume-size",
    "spatial_dims": "--spatial-dims",
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
    text = re.sub(rf"`({names})`", flag, text)
    # "Received: ignore_class=None" names an argument's value; a flag not
    # given has none to show (the message says no --ignore-class is set).
    return re.sub(r"\s*Received: --ignore-class None\.?$", "", text)


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
    # Keras wraps an error raised in a layer's `call` (e.g. a volume too small
    # for the model): "Exception encountered when calling UNet.call().", then
    # the error's own message (set in bold), then the arguments.
    wrapped = re.search(
        r"Exception encountered when calling [^\n]*\n\n(.*?)"
        r"(?:\n\nArguments received|$)",
        text,
        re.DOTALL,
    )
    inner = re.sub(r"\x1b\[[0-9;]*m", "", wrapped.group(1)).strip() if wrapped else ""
    text = inner or text
    # Errors raised inside tf.data (e.g. a bad mask) arrive wrapped, with the
    # original `ValueError: ...` line somewhere in the text.
    found = re.search(r"ValueError: (.+)", text)
    line = found.group(1) if found else text.strip().splitlines()[0]
    return UsageError(_as_flags(line.strip()))


# A decode op of the folder loader failed ("{{node decode_image/DecodeImage}}").
_DECODE_NODE = re.compile(r"\{\{node (?:[^}]*/)?Decode(?:Image|Png|Bmp|Gif|Jpeg)\}\}")


def data_error(error, data):
    """The `UsageError` for `error`, met while a tf.data pipeline over the
    folder of images `data` (--data, or None) ran: a bad file that seglayers
    named (its `ValueError`), or the file that TensorFlow's decoder refuses,
    found by decoding each again, since its error names none; else None."""
    if "ValueError: " in str(error):
        return _library_error(error)
    if data is None or not _DECODE_NODE.search(str(error)):
        return None
    from seglayers.data.directory import undecodable_file

    try:
        found = undecodable_file(data)
    except Exception:  # The folder changed since: the error as it came.
        return None
    if found is None:
        return None
    return UsageError(
        f"TensorFlow's decoder refuses {found[0]} of --data ({found[1]}): the "
        "file is damaged, or in a form it cannot read. Replace it, or remove "
        "it and its pair."
    )


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
            f"{reason[:200]}). Pass a model saved from seglayers, e.g. the "
            "model.keras that `seglayers train` wrote."
        ) from None
    if not isinstance(model, seglayers.SegmentationModel):
        raise UsageError(
            f"{path} holds a {type(model).__name__}, not a seglayers "
            "SegmentationModel (such as a UNet). Pass a model saved from "
            "seglayers, e.g. the model.keras that `seglayers train` wrote."
        )
    return model


def _inside(path, folder):
    """Whether `path` is `folder` or lies inside it, links resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _same_file(path, other):
    """Whether `path` and `other` name one file (links, hard ones too)."""
    if os.path.exists(path) and os.path.exists(other):
        return os.path.samefile(path, other)
    return os.path.realpath(path) == os.path.realpath(other)


def check_output_apart(flag, output, inputs, fix):
    """Refuses an output (`flag` names it) that is the current folder or one
    above it, or that is, lies inside or holds one of `inputs` (`(flag,
    path)` pairs): replacing it would delete what the command did not write.
    `fix` ends the message."""
    if _inside(os.getcwd(), output):
        where = "is" if _inside(output, os.getcwd()) else "holds"
        raise UsageError(f"{flag} {output} {where} the current folder; {fix}")
    for name, path in inputs:
        if _inside(output, path):
            where = "is" if _inside(path, output) else "lies inside"
        elif _inside(path, output):
            where = "holds"
        else:
            continue
        raise UsageError(f"{flag} {output} {where} {name} {path}; {fix}")


def check_json_path(path, overwrite=False, model=None):
    """Raises unless --json `path` can be written: checked before a command's
    work as well as when writing. It is never the `model` file, and an
    existing file is replaced only with `overwrite`."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"No such folder for --json: {folder}.")
    if os.path.isdir(path):
        raise UsageError(f"--json {path} is a folder; give a file name.")
    if model is not None and _same_file(path, model):
        raise UsageError(
            f"--json {path} is the model being evaluated ({model}); give "
            "another file for the results, e.g. --json results.json."
        )
    if os.path.lexists(path) and not overwrite:
        raise UsageError(
            f"--json {path} exists; choose another --json file or pass --overwrite."
        )


def _write_json_atomically(path, results, overwrite=False, model=None):
    # Checked again: the file may have appeared during the evaluation.
    check_json_path(path, overwrite, model)
    with atomic_file(path) as f:
        json.dump(results, f, indent=2)


def print_metrics(results):
    from seglayers.inference.evaluation import format_evaluation

    print("\n" + format_evaluation(results))


def _move_into_place(staging, output, overwrite):
    """Moves the run folder `staging` to `output`: whole when `output` is new;
    into an existing `output` (with `overwrite` when it is not empty) entry
    by entry, each of the run's files and folders (model.keras, ...,
    previews/) replacing the one of its name. Anything else in `output` is
    left as it is: --overwrite deletes only what a run writes."""
    if not os.path.isdir(output):
        os.replace(staging, output)
        return
    if os.listdir(output) and not overwrite:
        raise UsageError(
            f"{output} was filled by something else during training; "
            "nothing was written. Run again with another --output."
        )
    for name in sorted(os.listdir(staging)):
        target = os.path.join(output, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
        os.replace(os.path.join(staging, name), target)
    os.rmdir(staging)


def listed_files(inputs, extensions, kind, check_files=False):
    """The files named in `inputs`: files, and the files of each folder
    whose names end in `extensions`; `kind` ("image", "volume") names them
    in the errors. With `check_files`, a file given by name must end in
    `extensions` too."""
    files = []
    for path in inputs:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(extensions)
            )
            if not found:
                raise UsageError(f"{path} holds no {kind} ({', '.join(extensions)}).")
            files += found
        elif os.path.isfile(path):
            if check_files and not path.lower().endswith(extensions):
                raise UsageError(
                    f"{path} is not a {kind}; give {', '.join(extensions)} files."
                )
            files.append(path)
        else:
            raise UsageError(f"No such {kind} or folder: {path}.")
    return files
