import keras
import numpy as np
import pytest

from seglayers import UNet, evaluate_segmentation
from seglayers.inference import format_evaluation


def _data(num_images=5, classes=3, ignore_class=None, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (num_images, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, classes, (num_images, 32, 32, 1))
    if ignore_class is not None:
        masks[:, :4] = ignore_class
    return images, masks


def _reference(truth, predicted, num_classes, ignore_class=None):
    """The metrics from a numpy confusion matrix."""
    truth = truth.reshape(-1)
    predicted = predicted.reshape(-1)
    valid = truth != ignore_class
    size = max(num_classes, 2)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (truth[valid], predicted[valid]), 1)
    hits = np.diag(matrix)
    in_truth, in_prediction = matrix.sum(1), matrix.sum(0)
    with np.errstate(invalid="ignore"):
        iou = hits / (in_truth + in_prediction - hits)
        dice = 2 * hits / (in_truth + in_prediction)
    results = {"mean_iou": np.nanmean(iou), "mean_dice": np.nanmean(dice)}
    results["pixel_accuracy"] = hits.sum() / matrix.sum()
    for i in range(size):
        results[f"iou/{i}"], results[f"dice/{i}"] = iou[i], dice[i]
    return results


def _assert_close(results, expected):
    assert sorted(results) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_matches_a_numpy_confusion_matrix(ignore_class):
    keras.utils.set_random_seed(0)
    model = UNet(3, filters=4, depth=2, rescale=1 / 255)
    images, masks = _data(ignore_class=ignore_class)
    results = evaluate_segmentation(
        model, (images, masks), 3, ignore_class=ignore_class, batch_size=2
    )
    # The same batches as the evaluation's (2, 2, 1): a convolution's
    # rounding may change with the batch, and an argmax with it.
    predicted = model.predict(images, batch_size=2, verbose=0).argmax(-1)
    _assert_close(results, _reference(masks, predicted, 3, ignore_class))
    assert all(isinstance(value, float) for value in results.values())


def test_arrays_and_an_iterable_of_batches_agree():
    keras.utils.set_random_seed(0)
    model = UNet(3, filters=4, depth=2, rescale=1 / 255)
    images, masks = _data()
    batches = [(images[:3], masks[:3]), (images[3:], masks[3:])]
    names = ["sky", "tree", "road"]
    from_arrays = evaluate_segmentation(
        model, (images, masks), 3, class_names=names, batch_size=3
    )  # the batches of 3 and 2 above
    from_batches = evaluate_segmentation(model, iter(batches), 3, class_names=names)
    assert from_arrays == pytest.approx(from_batches)
    assert [key for key in from_arrays if key.startswith("iou/")] == [
        "iou/sky",
        "iou/tree",
        "iou/road",
    ]


def test_one_sigmoid_channel_is_two_classes():
    keras.utils.set_random_seed(0)
    model = UNet(1, filters=4, depth=2, rescale=1 / 255)
    images, masks = _data(classes=2)
    results = evaluate_segmentation(model, (images, masks), 1)
    predicted = (model.predict(images, verbose=0)[..., 0] > 0.5).astype(int)
    _assert_close(results, _reference(masks, predicted, 1))


def test_one_sigmoid_logit_takes_the_models_threshold():
    keras.utils.set_random_seed(0)
    model = UNet(1, filters=4, depth=2, rescale=1 / 255, output_activation=None)
    images, masks = _data(classes=2)
    results = evaluate_segmentation(model, (images, masks), 1)  # once an error
    logits = model.predict(images, verbose=0)[..., 0]
    _assert_close(results, _reference(masks, (logits > 0).astype(int), 1))
    given = evaluate_segmentation(model, (images, masks), 1, threshold=-0.5)
    _assert_close(given, _reference(masks, (logits > -0.5).astype(int), 1))


def test_batch_forms_agree():
    keras.utils.set_random_seed(0)
    model = UNet(3, filters=4, depth=2, rescale=1 / 255)
    images, masks = _data(ignore_class=255)
    expected = evaluate_segmentation(model, (images, masks), 3, ignore_class=255)
    as_list = evaluate_segmentation(model, [images, masks], 3, ignore_class=255)
    dicts = [{"images": images, "segmentation_masks": masks}]
    as_dicts = evaluate_segmentation(model, dicts, 3, ignore_class=255)
    # Weights 0 where the mask is ignored: the same pixels counted.
    weights = (masks[..., 0] != 255).astype("float32")
    unlabelled_as_0 = np.where(masks == 255, 0, masks)
    weighted = evaluate_segmentation(model, [(images, unlabelled_as_0, weights)], 3)
    weighted_arrays = evaluate_segmentation(
        model, (images, unlabelled_as_0, weights), 3, batch_size=2
    )
    no_weights = evaluate_segmentation(
        model, [images, masks, None], 3, ignore_class=255
    )
    for results in (as_list, as_dicts, weighted, weighted_arrays, no_weights):
        assert results == pytest.approx(expected)


def test_arrays_of_other_lengths_are_named():
    model = UNet(3, filters=4, depth=2)
    images, masks = _data()
    match = r"one mask \(and weight\) per image.*Received: data of shapes "
    with pytest.raises(ValueError, match=match + r"\[\(5, 32, 32, 3\), \(4, 32"):
        evaluate_segmentation(model, (images, masks[:4]), 3)
    with pytest.raises(ValueError, match=match + r".*\(5, 32, 32, 1\), \(3,\)\]"):
        evaluate_segmentation(model, (images, masks, np.ones(3)), 3)
    with pytest.raises(ValueError, match=match + r".*\(5, 32, 32, 1\), \(\)\]"):
        evaluate_segmentation(model, (images, masks, 1.0), 3)  # no len()
    with pytest.raises(ValueError, match=r"per image.*Received: data of 4 parts$"):
        evaluate_segmentation(model, (images, masks, None, [[1], [1, 2]]), 3)


def test_format_evaluation_lists_every_class():
    results = _reference(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 4)
    lines = format_evaluation(results).splitlines()
    assert [line.split()[0] for line in lines] == [
        "class",
        "0",
        "1",
        "2",
        "3",
        "mean",
        "pixel",
    ]
    assert lines[4].split() == ["3", "nan", "nan"]  # absent class
    assert lines[-1] == "pixel accuracy: 0.750"


@pytest.mark.parametrize(
    "data, kwargs, error, match",
    [
        (
            "mismatch",
            {},
            ValueError,
            r"`data` must be `\(images, masks\)` or `\(images, masks, sample_weight\)`",
        ),
        ("singles", {}, ValueError, r"`data` must yield `\(images, masks\)` or"),
        ("quads", {}, ValueError, r"Received: a batch of type tuple of 4 parts"),
        ("empty", {}, ValueError, r"`data` holds no images, so there is nothing"),
        (
            "ok",
            {"num_classes": 2},
            ValueError,
            r"`num_classes`=2 does not match the model, whose outputs have 3 "
            r"channels .* Pass num_classes=3\. Received: num_classes=2",
        ),
        ("ok", {"threshold": "0.5"}, TypeError, r"Received: threshold='0\.5'"),
        (
            "ok",
            {"threshold": float("inf")},
            ValueError,
            r"`threshold` must be a finite number.*Received: threshold=inf",
        ),
        ("ok", {"num_classes": 0}, ValueError, "`num_classes` must be a positive"),
        ("ok", {"ignore_class": 1}, ValueError, "`ignore_class`=1 is also a class"),
        ("ok", {"batch_size": 0}, ValueError, "`batch_size` must be a positive"),
        # Before: the keys as batches, "a batch of type str".
        (
            "a dict",
            {},
            ValueError,
            r"^`data` is a dict, and needs the keys 'images' and "
            r"'segmentation_masks' .*it lacks \['segmentation_masks'\]\. "
            r"Received: keys \['images', 'masks'\]$",
        ),
        # Before: "'NoneType' object is not iterable".
        (
            None,
            {},
            TypeError,
            r"^`data` must be `\(images, masks\)` arrays or an iterable of such "
            r"batches \(e\.g\. a `tf\.data\.Dataset`\)\. Received: data=None of "
            r"type NoneType$",
        ),
        ("a function", {}, TypeError, r"\)\. Call it to get the generator\. "),
        # Before: masks were to be resized to the images' pixels.
        (
            "unpaired",
            {},
            ValueError,
            r"^Batch 0 of `data` pairs 2 image\(s\) with 1 mask\(s\): each image "
            r"needs its mask\. Received: images of shape \(2, 32, 32, 3\), masks "
            r"of shape \(1, 32, 32, 1\)$",
        ),
        # Before: the NaN pixels' predictions were left out of every metric.
        (
            "a NaN pixel",
            {},
            ValueError,
            r"^`images` holds NaN or infinite values \(the first at \(1, 5, 6, 2\)\)"
            r";.*Received: images of shape \(2, 32, 32, 3\)$",
        ),
        (
            "a NaN pixel in batches",
            {},
            ValueError,
            r"^`images` \(batch 1 of `data`\) holds NaN or infinite values \(the "
            r"first at \(0, 5, 6, 2\)\);.*Received: images \(batch 1 of data\) "
            r"of shape \(1, 32, 32, 3\)$",
        ),
        # Before: the imaginary part dropped without a word.
        ("complex", {}, TypeError, r"^`images` must hold numbers .*complex64"),
        # Before: numpy's "setting an array element with a sequence", named
        # nothing.
        (
            "images of two sizes",
            {},
            ValueError,
            r"^`data\[0\]` \(images\) must be one array; nested lists need rows "
            r"of one length \(images and masks of one size: resize them.*numpy: ",
        ),
        # Before: "Cannot convert 0 to EagerTensor of dtype string".
        (
            "weights of text",
            {},
            TypeError,
            r"^`sample_weight` must hold numbers \(floats, integers or bools\), "
            r"one per sample or pixel: .*Received: sample_weight of dtype <U1$",
        ),
        # Before: RGB masks of 3 classes were read as one-hot (0.02 IoU).
        (
            "colour masks",
            {},
            ValueError,
            r"^`y_true` has the shape of one-hot masks \(\(2, 32, 32, 3\): the "
            r"last axis one per class\), but holds values outside \[0, 1\] "
            r"\(\[128, 255\]\): .*OneHotMask\(num_classes, palette=\.\.\.\)",
        ),
        # Before: keys iou/a, iou/b and iou/c.
        (
            "ok",
            {"class_names": "abc"},
            TypeError,
            r"^`class_names` must be a list of names \(str\), one per class.*"
            r"Received: class_names='abc'$",
        ),
        (
            "ok",
            {"model": None},
            TypeError,
            r"^`model` must be a Keras model, .* for `evaluate_segmentation`\.",
        ),
    ],
)
def test_bad_arguments(data, kwargs, error, match):
    images, masks = _data(num_images=2)
    nan = images.copy()
    nan[1, 5, 6, 2] = np.nan
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 0]], "uint8")[masks[..., 0]]
    data = {
        "mismatch": (images, masks[:1]),
        "singles": [images],
        "quads": [(images, masks, None, None)],
        "empty": (images[:0], masks[:0]),
        "ok": (images, masks),
        "a dict": {"images": images, "masks": masks},
        None: None,
        "a function": lambda: iter([(images, masks)]),
        "unpaired": [(images, masks[:1])],
        "a NaN pixel": (nan, masks),
        "a NaN pixel in batches": [(nan[:1], masks[:1]), (nan[1:], masks[1:])],
        "complex": (images + 1j, masks),
        "images of two sizes": ([images[0], images[1, :16]], masks),
        "weights of text": (images, masks, np.array(["1", "1"])),
        "colour masks": (images, colours),
    }[data]
    kwargs = {"model": UNet(3, filters=4, depth=2), "num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        evaluate_segmentation(data=data, **kwargs)


def test_a_threshold_outside_0_1_is_refused_for_probabilities():
    # Before: every pixel class 0, and a plausible pixel accuracy.
    images, masks = _data(num_images=2, classes=2)
    with pytest.raises(
        ValueError,
        match=r"^`threshold`=2\.0 cannot split this model's scores: they are "
        r"probabilities \(output_activation='sigmoid'\), in \[0, 1\], all on one "
        r"side of it\. Pass a threshold in \[0, 1\], e\.g\. 0\.5 \(the default\)",
    ):
        evaluate_segmentation(
            UNet(1, filters=4, depth=2, output_activation="sigmoid"),
            (images, masks),
            1,
            threshold=2,
        )
    # Logits take any threshold.
    logits = UNet(1, filters=4, depth=2, output_activation=None)
    assert evaluate_segmentation(logits, (images, masks), 1, threshold=2)


def test_images_as_a_list_are_one_array():
    # Before: Keras read a list as the inputs of a model of several.
    model = UNet(3, filters=4, depth=2)
    images, masks = _data(num_images=2)
    expected = evaluate_segmentation(model, (images, masks), 3)
    assert evaluate_segmentation(model, (list(images), masks), 3) == expected
    assert evaluate_segmentation(model, [(images, masks, None)], 3) == expected


_TABLE = {"mean_iou": 0.6, "iou/sky": 0.9, "mean_dice": 0.7, "dice/sky": 0.95}


@pytest.mark.parametrize(
    "results, error, match",
    [
        ([0.5], TypeError, r"^`results` must be the dict `evaluate_segmentation` "),
        (  # `model.evaluate`'s: before, KeyError 'mean_dice'
            {"loss": 0.1, "mean_iou": 0.5, "pixel_accuracy": 0.9},
            ValueError,
            r"^`results` must be the dict `evaluate_segmentation` returns, with IoU "
            r"and Dice per class and their means; it lacks \['mean_dice', "
            r"'iou/<class> for each class'\]\. Received: results with keys "
            r"\['loss', 'mean_iou', 'pixel_accuracy'\]$",
        ),
        (_TABLE, ValueError, r"it lacks \['pixel_accuracy'\]"),
        (
            {**_TABLE, "pixel_accuracy": 0.8, "dice/sky": None},
            TypeError,
            r"^`results` must hold a number for each key, and 'dice/sky' holds "
            r"None\. Received: results\['dice/sky'\]=None$",
        ),
    ],
)
def test_format_evaluation_refuses_what_is_no_evaluation(results, error, match):
    with pytest.raises(error, match=match):
        format_evaluation(results)
