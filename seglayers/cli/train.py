"""`seglayers train`: a model (`--model`, a UNet by default) on a folder
data set or the built-in shapes, or (`--spatial-dims 3`) on a volume folder
or the built-in volumes."""

import datetime
import json
import os
import shutil
import time

from seglayers._files import make_staging_dir
from seglayers.cli._common import (
    UsageError,
    _check_ignore_class,
    _check_positive,
    _library_error,
    _move_into_place,
    check_output_apart,
    data_error,
    print_metrics,
)
from seglayers.cli._fit import compile_model, fit_dataset
from seglayers.cli._volumes import (
    DEFAULTS,
    FOLDER_DEFAULTS,
    load_folder,
    resolve_size,
)

# --model NAME: the seglayers class, and the size flags it takes (as its
# arguments of the same name). The class is looked up only when training,
# so that the parser stays light.
MODELS = {
    "unet": ("UNet", ("filters", "depth")),
    "unetplusplus": ("UNetPlusPlus", ("filters", "depth")),
    "fpn": ("FPN", ("depth",)),
    "deeplabv3plus": ("DeepLabV3Plus", ()),
}
# The models that also take volumes (the others decode a 2-D encoder).
VOLUME_MODELS = ("unet", "unetplusplus")
# The classes with an encoder of their own when --encoder is left out.
OWN_ENCODER_MODELS = ("UNet", "UNetPlusPlus")


def _model_arguments(args):
    """`(class name, keyword arguments)` for --model, --encoder and the size
    flags; a flag the model does not take is a usage error."""
    name, takes = MODELS[args.model]
    for flag in ("filters", "depth"):
        if getattr(args, flag) is not None and flag not in takes:
            raise UsageError(
                f"--{flag} does not apply to --model {args.model}; it sets "
                f"{' and '.join('--' + t for t in takes) or 'neither'}."
            )
    kwargs = {"num_classes": args.num_classes}
    own_encoder = args.encoder is None and name in OWN_ENCODER_MODELS
    for flag in takes:
        value = getattr(args, flag)
        if value is None and own_encoder:
            # The command's small defaults are for a model's own encoder;
            # over an encoder (fpn's and deeplabv3plus's default resnet50
            # included) a flag left out keeps the model's default.
            value = DEFAULTS[args.spatial_dims][flag]
        if value is not None:
            kwargs[flag] = value
    if args.spatial_dims == 3:
        kwargs["spatial_dims"] = 3
    if args.encoder is not None:
        kwargs["encoder"] = args.encoder
    elif own_encoder:
        # Their own encoder takes inputs in [0, 1]; a pretrained-style
        # encoder maps [0, 255] images itself.
        kwargs["rescale"] = 1 / 255
    return name, kwargs


def _check_encoder(args):
    from seglayers.models.encoders import ENCODERS

    if args.encoder is not None and args.encoder not in ENCODERS:
        raise UsageError(
            f"--encoder {args.encoder} is not a known encoder; choose one of "
            f"{', '.join(sorted(ENCODERS))}."
        )


def _resolve_defaults(args):
    """Fills in the flags left out with the defaults of --spatial-dims;
    refuses what volumes cannot take."""
    if args.spatial_dims == 3 and args.model not in VOLUME_MODELS:
        raise UsageError(
            f"--model {args.model} is a 2-D model (it decodes a 2-D image "
            f"encoder); with --spatial-dims 3 use --model "
            f"{' or '.join(VOLUME_MODELS)}."
        )
    if args.spatial_dims == 3 and args.encoder is not None:
        raise UsageError(
            "--encoder needs --spatial-dims 2: the encoders are 2-D image "
            "models; for volumes leave it out (the model's own encoder)."
        )
    defaults = dict(DEFAULTS[args.spatial_dims])
    if args.data is not None:
        if args.num_samples is not None:
            raise UsageError(
                f"--num-samples is for the built-in data; --data {args.data} "
                "trains on all of its files (leave --num-samples out)."
            )
        defaults.update(FOLDER_DEFAULTS)
    for name in ("num_samples", "epochs", "batch_size", "validation_split"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    resolve_size(args, args.spatial_dims, f"--spatial-dims is {args.spatial_dims}")


def _check_train_args(args):
    _resolve_defaults(args)
    _check_positive(args, ("num_samples", "epochs", "batch_size"))
    for flag in ("filters", "depth"):
        if getattr(args, flag) is not None:
            _check_positive(args, (flag,))
    if not 0 < args.validation_split < 1:
        raise UsageError(
            f"--validation-split must be between 0 and 1, e.g. 0.2; got "
            f"{args.validation_split}."
        )
    if args.data is None:
        if args.num_samples < 2:
            raise UsageError(
                f"--num-samples must be at least 2, one to train and one to "
                f"validate; got {args.num_samples}."
            )
        # At least one sample trains: int(n * split) < n for a split below 1.
        if int(args.num_samples * args.validation_split) < 1:
            raise UsageError(
                f"--num-samples {args.num_samples} with --validation-split "
                f"{args.validation_split} leaves no sample to validate; use more "
                "samples or a larger --validation-split."
            )
    elif args.num_classes is None:
        raise UsageError("--data needs --num-classes, the number of classes.")
    if args.data is None and args.num_classes is None:
        # The shapes: background, circle, square, triangle; the volumes:
        # background, sphere, cube, torus.
        args.num_classes = 4
    _check_ignore_class(args)
    # The range numpy's legacy seeding takes (`keras.utils.set_random_seed`).
    if not 0 <= args.seed < 2**32:
        raise UsageError(
            f"--seed must be an integer from 0 to {2**32 - 1}; got {args.seed}."
        )
    output = args.output or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    # Never where --overwrite could replace the user's files or the data.
    check_output_apart(
        "--output",
        output,
        [("--data", args.data)] if args.data is not None else [],
        "give the run a folder of its own, e.g. --output runs/mine.",
    )
    above = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise UsageError(
            f"--output {output} lies inside {above}, which is a file; choose "
            "another --output."
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


def _load_data(args):
    """`(train, validation, class_names)` from --data or the built-in shapes
    (images) or volumes."""
    from seglayers.datasets import shapes, volumes

    if args.data is not None:
        train, val = load_folder(
            args.spatial_dims,
            args.data,
            args.size,
            batch_size=args.batch_size,
            num_classes=args.num_classes,
            ignore_class=args.ignore_class,
            validation_split=args.validation_split,
            subset="both",
            seed=args.seed,
        )
        # One sigmoid channel (--num-classes 1) is two classes, 0 and 1.
        return train, val, [str(i) for i in range(max(args.num_classes, 2))]

    generated = volumes if args.spatial_dims == 3 else shapes
    args.num_classes = args.num_classes or 4
    try:
        images, masks = generated.load_data(
            args.num_samples, args.size, args.num_classes, args.seed
        )
    except ValueError as error:
        raise _library_error(error) from None
    except MemoryError:
        flag = "--volume-size" if args.spatial_dims == 3 else "--image-size"
        raise UsageError(
            f"--num-samples {args.num_samples} at {'x'.join(map(str, args.size))} "
            f"does not fit in memory; use fewer samples or a smaller {flag}."
        ) from None
    split = len(images) - int(len(images) * args.validation_split)
    return (
        (images[:split], masks[:split]),
        (images[split:], masks[split:]),
        list(generated.CLASS_NAMES[: args.num_classes]),
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

    _check_encoder(args)
    name, kwargs = _model_arguments(args)
    train_data, val_data, class_names = _load_data(args)
    if args.mixed_precision:
        on_gpu = bool(keras.distribution.list_devices("gpu"))
        keras.config.set_dtype_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    keras.utils.set_random_seed(args.seed)
    try:
        model = getattr(seglayers, name)(**kwargs)
        channels = _channels(train_data)
        model.build((None,) * (args.spatial_dims + 1) + (channels,))
        model.compute_output_shape((None, *args.size, channels))  # checks the size
    except (ValueError, TypeError) as error:
        raise _library_error(error) from None
    train_batches = fit_dataset(train_data, args.batch_size, shuffle_seed=args.seed)
    # A folder dataset that does not know its length trains at a fixed rate.
    compile_model(model, args, class_names, max(int(train_batches.cardinality()), 0))
    source = args.data or (
        f"the {'volumes' if args.spatial_dims == 3 else 'shapes'} data set"
    )
    shown = ", ".join(
        f"{key}={value!r}" for key, value in kwargs.items() if key != "rescale"
    )
    print(
        f"Training {name}({shown}): {model.count_params():,} parameters, on "
        f"{source} at {'x'.join(map(str, args.size))}."
    )

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
                train_batches,
                # The dataset shuffles; Keras warns if fit's shuffle is left on.
                shuffle=False,
                validation_data=fit_dataset(val_data, args.batch_size),
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
            images = args.data if args.spatial_dims == 2 else None
            usage = data_error(error, images)  # A bad file met in tf.data.
            if usage is not None:
                raise usage from None
            raise
        seconds = time.perf_counter() - start
        model.save(os.path.join(staging, "model.keras"))
        results = seglayers.evaluate_segmentation(
            model,
            val_data,
            args.num_classes,
            ignore_class=args.ignore_class,
            class_names=class_names,
            batch_size=args.batch_size,
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


def _channels(data):
    if isinstance(data, tuple):
        return data[0].shape[-1]
    return data.element_spec[0].shape[-1]


def _preview_samples(data):
    if isinstance(data, tuple):
        return data[0][:4], data[1][:4]
    return data.take(1)
