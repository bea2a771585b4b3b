"""`seglayers evaluate`: mean IoU, per-class IoU and Dice, pixel accuracy."""

from seglayers.cli._common import (
    UsageError,
    _check_ignore_class,
    _check_positive,
    _library_error,
    _load_model,
    _write_json_atomically,
    check_json_path,
    data_error,
    print_metrics,
)
from seglayers.cli._volumes import (
    DEFAULTS,
    check_size,
    load_folder,
    resolve_size,
    spatial_dims,
)


def evaluate(args):
    if args.json:
        check_json_path(args.json, args.overwrite, args.model)
    model = _load_model(args.model)
    dims = spatial_dims(model)
    resolve_size(args, dims, f"{args.model} is a {dims}-D model")
    check_size(model, args, dims)
    if args.batch_size is None:
        args.batch_size = DEFAULTS[dims]["batch_size"]
    _check_positive(args, ("batch_size",))
    num_classes = args.num_classes or model.num_classes
    if num_classes != model.num_classes:
        raise UsageError(
            f"{args.model} predicts {model.num_classes} classes; got "
            f"--num-classes {num_classes}."
        )
    args.num_classes = num_classes
    _check_ignore_class(args)
    import seglayers

    data = load_folder(
        dims,
        args.data,
        args.size,
        args.model,
        batch_size=args.batch_size,
        num_classes=num_classes,
        ignore_class=args.ignore_class,
        shuffle=False,
    )
    try:
        results = seglayers.evaluate_segmentation(
            model,
            data,
            num_classes,
            ignore_class=args.ignore_class,
            class_names=saved_class_names(model, num_classes),
        )
    except ValueError as error:
        raise _library_error(error) from None
    except Exception as error:
        usage = data_error(error, args.data if dims == 2 else None)
        if usage is not None:
            raise usage from None
        raise
    print_metrics(results)
    if args.json:
        _write_json_atomically(args.json, results, args.overwrite, args.model)
        print(f"Wrote {args.json}")
    return 0


def saved_class_names(model, num_classes):
    """The class names a seglayers metric of `model`'s compiled metrics holds
    (`seglayers train` saves them in its `MeanIoU`), so that `evaluate`
    names the classes as `train` did; None when there are none."""
    from seglayers._masks import num_ids

    pending = [(model.get_compile_config() or {}).get("metrics")]
    while pending:
        item = pending.pop(0)
        if isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict) and "registered_name" not in item:
            pending.extend(item.values())  # metrics by output name
        elif isinstance(item, dict) and str(item["registered_name"]).startswith(
            "seglayers>"
        ):
            names = (item.get("config") or {}).get("class_names")
            if isinstance(names, list) and len(names) == num_ids(num_classes):
                return [str(name) for name in names]
    return None
