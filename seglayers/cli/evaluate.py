"""`seglayers evaluate`: mean IoU, per-class IoU and Dice, pixel accuracy."""

from seglayers.cli._common import (
    UsageError,
    _check_ignore_class,
    _check_positive,
    _library_error,
    _load_model,
    _write_json_atomically,
    print_metrics,
)


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
