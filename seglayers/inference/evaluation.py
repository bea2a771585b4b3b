"""A model's mean IoU, per-class IoU and Dice and pixel accuracy on a data set."""

import keras
import numpy as np

from seglayers._masks import model_threshold, num_ids
from seglayers._validation import (
    check_ignore_class,
    check_ignore_not_a_class,
    check_positive_int,
)
from seglayers.inference._checks import check_model, check_numbers, check_one_output


def evaluate_segmentation(
    model,
    data,
    num_classes,
    ignore_class=None,
    class_names=None,
    batch_size=32,
    threshold=None,
):
    """Measures a segmentation model on a data set, class by class.

    Runs `model` over `data` once and fills one `MeanIoU`, `MeanDice` and
    `PixelAccuracy` (so the numbers are those of `model.evaluate` with these
    metrics): IoU and Dice per class and their means over the classes
    present, and the fraction of pixels labelled right. Pixels labelled
    `ignore_class` count nowhere. Absent classes (in neither the masks nor
    the predictions) are NaN and left out of the means.

    Args:
        model: a Keras model that maps images to per-pixel scores (logits,
            probabilities or one sigmoid channel) at the masks' size, such
            as a `seglayers.SegmentationModel`.
        data: `(images, masks)` as arrays (then predicted `batch_size` at a
            time), or an iterable of `(images, masks)` batches such as a
            `tf.data.Dataset` from `segmentation_dataset_from_directory`;
            either may add a `sample_weight`, per-sample or per-pixel 0/1
            weights (`(images, masks, sample_weight)`), and batches may be
            `{"images", "segmentation_masks"}` dicts. Masks hold class ids
            `(N, H, W)` or `(N, H, W, 1)`, or one-hot.
        num_classes: int, the model's classes (1: one sigmoid channel,
            classes 0 and 1).
        ignore_class: int or `None`, the id of unlabelled pixels (e.g. 255).
        class_names: list of names, one per class (two when `num_classes`
            is 1), used in the keys. Defaults to the ids `"0"`, `"1"`, ...
        batch_size: int, images per model call when `data` is arrays.
            Defaults to 32.
        threshold: float or `None`, where one sigmoid channel turns to class
            1. `None` (the default) takes 0 for a model that says it outputs
            logits (`output_activation=None`), else 0.5.

    Returns:
        A dict of floats: `"mean_iou"`, `"iou/<name>"` for every class,
        `"mean_dice"`, `"dice/<name>"` and `"pixel_accuracy"`; see
        `format_evaluation` for a table.

    Example:

    >>> import seglayers
    >>> model = seglayers.UNet(3, filters=4, depth=2)
    >>> rng = np.random.default_rng(0)
    >>> images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    >>> masks = rng.integers(0, 3, (4, 32, 32, 1))
    >>> results = evaluate_segmentation(model, (images, masks), num_classes=3)
    >>> [key for key in results if key.startswith("iou/")]
    ['iou/0', 'iou/1', 'iou/2']
    >>> 0 <= results["mean_iou"] <= 1
    True
    """
    import seglayers

    check_model(model, "evaluate_segmentation")
    num_classes = check_positive_int("num_classes", num_classes)
    ignore_class = check_ignore_not_a_class(
        check_ignore_class(ignore_class), num_classes
    )
    batch_size = check_positive_int("batch_size", batch_size)
    if class_names is None:
        # One sigmoid channel (num_classes=1) is two classes, 0 and 1.
        class_names = [str(i) for i in range(num_ids(num_classes))]
    threshold = model_threshold(model, threshold)
    named = dict(threshold=threshold, class_names=class_names)
    metrics = [
        seglayers.MeanIoU(num_classes, ignore_class, **named),
        seglayers.MeanDice(num_classes, ignore_class, **named),
        seglayers.PixelAccuracy(num_classes, ignore_class, threshold=threshold),
    ]
    seen = 0
    for images, masks, weights in _batches(data, batch_size, model):
        predictions = model.predict_on_batch(images)
        predictions = check_one_output(predictions, "evaluate_segmentation")
        _check_channels(predictions, num_classes)
        for metric in metrics:
            metric.update_state(masks, predictions, sample_weight=weights)
        seen += len(masks)
    if not seen:
        raise ValueError(
            "`data` holds no images, so there is nothing to measure. Pass "
            "`(images, masks)` or a data set with at least one batch."
        )
    results = {}
    for metric in metrics:
        value = metric.result()
        value = value if isinstance(value, dict) else {metric.name: value}
        results.update(
            {k: float(keras.ops.convert_to_numpy(v)) for k, v in value.items()}
        )
    return results


def format_evaluation(results):
    """The results of `evaluate_segmentation` as a table to print.

    Args:
        results: the dict `evaluate_segmentation` returns.

    Returns:
        A str: a line per class with its IoU and Dice, then their means and
        the pixel accuracy.

    Example:

    >>> print(format_evaluation({
    ...     "mean_iou": 0.6, "iou/sky": 0.9, "iou/tree": 0.3,
    ...     "mean_dice": 0.7, "dice/sky": 0.95, "dice/tree": 0.45,
    ...     "pixel_accuracy": 0.875}))
    class     IoU    Dice
    sky     0.900   0.950
    tree    0.300   0.450
    mean    0.600   0.700
    pixel accuracy: 0.875
    """
    _check_results(results)
    names = [key.split("/", 1)[1] for key in results if key.startswith("iou/")]
    width = max(len(n) for n in names + ["class"])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}"]
    for name in names:
        iou, dice = results["iou/" + name], results["dice/" + name]
        lines.append(f"{name:<{width}}  {iou:6.3f}  {dice:6.3f}")
    means = f"{results['mean_iou']:6.3f}  {results['mean_dice']:6.3f}"
    lines.append(f"{'mean':<{width}}  {means}")
    lines.append(f"pixel accuracy: {results['pixel_accuracy']:.3f}")
    return "\n".join(lines)


def _check_results(results):
    """Refuses what `evaluate_segmentation` does not return: a dict missing
    a key of the table (`model.evaluate`'s has no `dice/<class>`), or
    values that are no numbers."""
    if not isinstance(results, dict):
        raise TypeError(
            "`results` must be the dict `evaluate_segmentation` returns. "
            f"Received: results of type {type(results).__name__}"
        )
    names = [key.split("/", 1)[1] for key in results if key.startswith("iou/")]
    needed = ["mean_iou", "mean_dice", "pixel_accuracy"]
    needed += [f"dice/{name}" for name in names]
    missing = [key for key in needed if key not in results]
    if missing or not names:
        missing += [] if names else ["iou/<class> for each class"]
        raise ValueError(
            "`results` must be the dict `evaluate_segmentation` returns, with "
            f"IoU and Dice per class and their means; it lacks {missing}. "
            f"Received: results with keys {sorted(results)}"
        )
    for key in needed + [f"iou/{name}" for name in names]:
        value = results[key]
        if isinstance(value, (bool, str, bytes)) or not np.isscalar(
            np.asarray(value)[()]
        ):
            raise TypeError(
                f"`results` must hold a number for each key, and {key!r} holds "
                f"{value!r}. Received: results[{key!r}]={value!r}"
            )


def _check_channels(predictions, num_classes):
    channels = predictions.shape[-1]
    if channels != num_classes:
        raise ValueError(
            f"`num_classes`={num_classes} does not match the model, whose "
            f"outputs have {channels} channels (one per class, or one sigmoid "
            f"channel for num_classes=1). Pass num_classes={channels}. "
            f"Received: num_classes={num_classes}"
        )


def _batches(data, batch_size, model):
    """`(images, masks, sample_weight or None)` batches from arrays, or from
    an iterable of batches, each image checked for numbers (NaN, complex)."""
    if isinstance(data, dict):
        data = _pair(data, "`data`")
    if (
        isinstance(data, list)
        and len(data) in (2, 3)
        and all(hasattr(part, "shape") for part in data[:2])
        and (len(data) == 2 or data[2] is None or hasattr(data[2], "shape"))
    ):
        data = tuple(data)  # `[images, masks]`, not a list of batches.
    if isinstance(data, tuple):
        if len(data) == 3 and data[2] is None:
            data = data[:2]
        if len(data) in (2, 3):
            shapes = [_shape(part, index) for index, part in enumerate(data)]
            received = f"data of shapes {shapes}"
        else:
            shapes, received = [()], f"data of {len(data)} parts"
        lengths = {shape[:1] for shape in shapes}
        if len(lengths) != 1 or () in lengths:
            raise ValueError(
                "`data` must be `(images, masks)` or `(images, masks, "
                "sample_weight)` with one mask (and weight) per image, or an "
                "iterable of such batches (e.g. a `tf.data.Dataset`). "
                f"Received: {received}"
            )
        # A list of images is one array, not a model's several inputs.
        parts = [x if keras.ops.is_tensor(x) else np.asarray(x) for x in data]
        check_numbers(keras.ops.convert_to_numpy(parts[0]), model, "`images`")
        for i in range(0, len(parts[0]), batch_size):
            batch = [part[i : i + batch_size] for part in parts]
            yield batch[0], batch[1], batch[2] if len(batch) == 3 else None
        return
    try:
        batches = iter(data)
    except TypeError:
        hint = " Call it to get the generator." if callable(data) else ""
        raise TypeError(
            "`data` must be `(images, masks)` arrays or an iterable of such "
            f"batches (e.g. a `tf.data.Dataset`).{hint} Received: data={data!r} "
            f"of type {type(data).__name__}"
        ) from None
    for index, batch in enumerate(batches):
        if isinstance(batch, dict):
            batch = _pair(batch, "a batch of `data`")
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            what = type(batch).__name__
            if isinstance(batch, (tuple, list)):
                what = f"{what} of {len(batch)} parts"
            raise ValueError(
                "`data` must yield `(images, masks)` or `(images, masks, "
                'sample_weight)` batches, or `{"images", "segmentation_masks"}` '
                f"dicts. Received: a batch of type {what}"
            )
        # A tf.data batch on another backend: its arrays, as numpy.
        parts = [
            x if x is None or keras.ops.is_tensor(x) else np.asarray(x) for x in batch
        ]
        images, masks = parts[:2]
        if len(images) != len(masks):
            raise ValueError(
                f"Batch {index} of `data` pairs {len(images)} image(s) with "
                f"{len(masks)} mask(s): each image needs its mask. Received: "
                f"images of shape {tuple(images.shape)}, masks of shape "
                f"{tuple(masks.shape)}"
            )
        name = f"`images` (batch {index} of `data`)"
        check_numbers(keras.ops.convert_to_numpy(images), model, name)
        yield images, masks, parts[2] if len(parts) == 3 else None


def _shape(part, index):
    """The shape of an array, tensor or list, without converting a tensor;
    nested lists of unequal lengths are a `ValueError` naming `data[index]`."""
    shape = getattr(part, "shape", None)
    if shape is not None:
        return tuple(shape)
    try:
        return np.shape(part)
    except ValueError as error:  # numpy: "... has an inhomogeneous shape ..."
        what = ("images", "masks", "sample_weight")[index]
        raise ValueError(
            f"`data[{index}]` ({what}) must be one array; nested lists need "
            f"rows of one length (images and masks of one size: resize them, "
            f"or pass batches of one size). numpy: {error}"
        ) from None


def _pair(batch, what):
    """`(images, masks)` of a `{"images", "segmentation_masks"}` dict."""
    missing = {"images", "segmentation_masks"} - set(batch)
    if missing:
        raise ValueError(
            f"{what} is a dict, and needs the keys 'images' and "
            f"'segmentation_masks' (as `as_dict=True` data sets give); it lacks "
            f"{sorted(missing)}. Received: keys {sorted(map(str, batch))}"
        )
    return batch["images"], batch["segmentation_masks"]
