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
    weighted = evaluate_segmentation(
        model, [(images, np.where(masks == 255, 0, masks), weights)], 3
    )
    for results in (as_list, as_dicts, weighted):
        assert results == pytest.approx(expected)


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
        ("mismatch", {}, ValueError, r"`data` must be `\(images, masks\)` with one"),
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
    ],
)
def test_bad_arguments(data, kwargs, error, match):
    model = UNet(3, filters=4, depth=2)
    images, masks = _data(num_images=2)
    data = {
        "mismatch": (images, masks[:1]),
        "singles": [images],
        "quads": [(images, masks, None, None)],
        "empty": (images[:0], masks[:0]),
        "ok": (images, masks),
    }[data]
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        evaluate_segmentation(model, data, **kwargs)
