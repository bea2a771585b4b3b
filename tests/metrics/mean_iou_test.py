import warnings

import keras
import numpy as np
import pytest

from seglayers import MeanIoU
from tests.harness import TORCH_SOFTMAX_SCCE, TRACED_STEP, _check_config
from tests.metrics.helpers import (
    numpy_confusion,
    numpy_scores,
    random_segmentation,
    traced_update,
)


@pytest.mark.parametrize("ignore_class", [None, 255])
@pytest.mark.parametrize("absent", [None, 2])
def test_agrees_with_keras_and_numpy(ignore_class, absent):
    y_true, logits = random_segmentation(0, ignore_class=ignore_class, absent=absent)
    metric = MeanIoU(5, ignore_class=ignore_class)
    metric.update_state(y_true, logits)
    ours = float(metric.result())

    reference = keras.metrics.MeanIoU(5, ignore_class=ignore_class, sparse_y_pred=False)
    with warnings.catch_warnings():
        # Keras's own metric asks for int64, which JAX (no x64) truncates with
        # a warning; the counts are the same.
        warnings.simplefilter("ignore", UserWarning)
        reference.update_state(y_true, logits)
    iou, _ = numpy_scores(numpy_confusion(y_true, logits.argmax(-1), 5, ignore_class))
    assert ours == pytest.approx(float(reference.result()), abs=1e-6)
    assert ours == pytest.approx(np.nanmean(iou), abs=1e-6)
    if absent is not None:
        assert np.isnan(iou[absent])  # left out of the mean, not counted as 0


def test_streaming_equals_one_big_batch():
    y_true, logits = random_segmentation(1, batch=6, ignore_class=255)
    streamed = MeanIoU(5, ignore_class=255)
    for i in range(0, 6, 2):
        streamed.update_state(y_true[i : i + 2], logits[i : i + 2])
    whole = MeanIoU(5, ignore_class=255)
    whole.update_state(y_true, logits)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(streamed.confusion_matrix()),
        keras.ops.convert_to_numpy(whole.confusion_matrix()),
    )
    streamed.reset_state()
    assert float(keras.ops.sum(streamed.confusion_matrix())) == 0


def _forms(y_true, logits, num_classes):
    """The same prediction as logits, probabilities, one-hot and ids."""
    ids = logits.argmax(-1)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    return {
        "logits": logits,
        "probabilities": probs,
        "one-hot": np.eye(num_classes, dtype="float32")[ids],
        "ids": ids.astype("int32"),
        "ids (H, W, 1) float": ids[..., None].astype("float32"),
    }


@pytest.mark.parametrize(
    "true_form", ["ids (H, W)", "ids (H, W, 1)", "one-hot with ignored rows"]
)
def test_reads_every_form_of_input(true_form):
    y_true, logits = random_segmentation(2, ignore_class=255)
    expected = MeanIoU(5, ignore_class=255)
    expected.update_state(y_true, logits)
    if true_form == "ids (H, W, 1)":
        y_true = y_true[..., None]
    elif true_form == "one-hot with ignored rows":
        one_hot = np.zeros(y_true.shape + (5,), "float32")
        labelled = y_true != 255
        one_hot[labelled, y_true[labelled]] = 1.0
        y_true = one_hot
    for form, y_pred in _forms(y_true, logits, 5).items():
        metric = MeanIoU(5, ignore_class=255)
        metric.update_state(y_true, y_pred)
        assert float(metric.result()) == pytest.approx(float(expected.result())), form


@pytest.mark.parametrize("num_classes", [1, 2])
def test_binary_with_one_sigmoid_channel(num_classes):
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=(2, 8, 8, 1))
    probs = rng.uniform(size=(2, 8, 8, 1)).astype("float32")
    metric = MeanIoU(num_classes, threshold=0.3)
    metric.update_state(y_true, probs)
    iou, _ = numpy_scores(numpy_confusion(y_true, (probs > 0.3).astype(int), 2))
    assert float(metric.result()) == pytest.approx(np.nanmean(iou), abs=1e-6)
    logits = MeanIoU(num_classes, threshold=0.0)
    logits.update_state(y_true, np.log(probs / (1 - probs)) - np.log(0.3 / 0.7))
    assert float(logits.result()) == pytest.approx(float(metric.result()), abs=1e-6)


@TRACED_STEP
def test_out_of_range_ids_are_counted_nowhere_and_reported():
    y_true = np.array([[0, 1, 7, -1, 255]])
    y_pred = np.array([[0, 1, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"class ids \[-1, 7\] outside \[0, 2\)"):
        MeanIoU(2, ignore_class=255).update_state(y_true, y_pred)  # eagerly
    metric = MeanIoU(2, ignore_class=255)
    traced_update(metric, y_true, y_pred)  # as in `fit`
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(metric.confusion_matrix()), [[1, 0], [0, 1]]
    )
    assert metric.out_of_range_count == 2
    with pytest.warns(UserWarning, match=r"2 pixels had no class: a class id outside"):
        assert float(metric.result()) == 1.0


def test_sample_weight_zero_leaves_pixels_out():
    y_true = np.array([[0, 1, 1, 0]])
    y_pred = np.array([[0, 0, 1, 1]])
    metric = MeanIoU(2)
    metric.update_state(y_true, y_pred, sample_weight=np.array([[1, 0, 1, 0]]))
    assert float(metric.result()) == 1.0


def test_counts_stay_exact_past_float32_precision():
    metric = MeanIoU(2)
    ones = np.zeros((2**20 + 1,), "int32")
    for _ in range(17):
        metric.update_state(ones, ones)
    low = keras.ops.convert_to_numpy(metric.counts_low).astype(np.int64)
    high = keras.ops.convert_to_numpy(metric.counts_high).astype(np.int64)
    assert (high * 2**20 + low)[0] == 17 * (2**20 + 1)  # > 2**24, odd


@TORCH_SOFTMAX_SCCE
def test_class_names_put_per_class_values_in_the_logs():
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(8, 8, 8, 3)).astype("float32")
    masks = rng.integers(0, 3, size=(8, 8, 8, 1))
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, activation="softmax")]
    )
    metric = MeanIoU(3, class_names=["sky", "road", "car"])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[metric])
    history = model.fit(images, masks, validation_split=0.25, epochs=1, verbose=0)
    for key in ("mean_iou", "iou/sky", "iou/road", "iou/car", "val_iou/car"):
        assert key in history.history, history.history.keys()
    logged = [history.history[f"iou/{n}"][0] for n in ("sky", "road", "car")]
    assert history.history["mean_iou"][0] == pytest.approx(np.nanmean(logged), abs=1e-6)


@pytest.mark.parametrize(
    "y_true_shape, y_pred_shape, match",
    [
        (
            (2, 8, 8),
            (2, 4, 4, 3),
            r"cover different pixels.*\(2, 8, 8\) against "
            r"\(2, 4, 4\).*Resize the masks",
        ),
        ((2, 8, 8, 4), (2, 8, 8, 3), r"Cannot match `y_true` to `y_pred`"),
        ((2, 8, 8), (2, 8, 8, 4), r"Cannot match|cover different"),
    ],
)
def test_uninterpretable_inputs(y_true_shape, y_pred_shape, match):
    metric = MeanIoU(3)
    with pytest.raises(ValueError, match=match):
        metric.update_state(np.zeros(y_true_shape, "int32"), np.zeros(y_pred_shape))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, r"num_classes=0"),
        ({"num_classes": 3, "ignore_class": "255"}, TypeError, r"ignore_class='255'"),
        (
            {"num_classes": 3, "class_names": ["a"]},
            ValueError,
            r"one name per class, 3",
        ),
        (
            {"num_classes": 3, "y_pred_format": "probs"},
            ValueError,
            r"`y_pred_format` must be one of 'auto', 'scores' or 'ids'",
        ),
        ({"num_classes": 3, "threshold": "0.5"}, TypeError, r"threshold='0.5'"),
        (
            {"num_classes": 1, "threshold": float("nan")},
            ValueError,
            r"`threshold` must be a finite number.*Received: threshold=nan",
        ),
        (
            {"num_classes": 2, "class_names": ["a", "a"]},
            ValueError,
            r"`class_names` must be distinct.*Received: class_names=\['a', 'a'\]",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MeanIoU(**kwargs)


@pytest.mark.parametrize("num_classes, ignore_class", [(3, 0), (3, 2), (1, 1)])
def test_ignore_class_that_is_also_a_class_is_refused(num_classes, ignore_class):
    with pytest.raises(
        ValueError,
        match=rf"`ignore_class`={ignore_class} is also a class id.*"
        rf"Received: ignore_class={ignore_class}, num_classes={num_classes}",
    ):
        MeanIoU(num_classes, ignore_class=ignore_class)


def test_config():
    _check_config(
        MeanIoU,
        {
            "num_classes": 4,
            "ignore_class": 255,
            "class_names": ["a", "b", "c", "d"],
            "threshold": 0.0,
        },
    )


def test_runs_compiled_in_fit():
    y_true, logits = random_segmentation(5, batch=4, size=8, ignore_class=255)
    model = keras.Sequential([keras.Input((8, 8, 5)), keras.layers.Identity()])
    model.compile(loss="mse", metrics=[MeanIoU(5, ignore_class=255)])
    # evaluate runs update_state inside the compiled step.
    result = model.evaluate(
        logits, y_true[..., None], batch_size=2, return_dict=True, verbose=0
    )
    reference = MeanIoU(5, ignore_class=255)
    reference.update_state(y_true, logits)
    assert result["mean_iou"] == pytest.approx(float(reference.result()), abs=1e-6)


def test_class_argmax_equals_numpy_with_ties_and_signs():
    from seglayers._masks import class_argmax

    rng = np.random.default_rng(6)
    scores = rng.integers(-3, 4, size=(64, 7)).astype("float32")  # many ties
    # -0.0 and 0.0 tie, as numpy and TensorFlow have them (JAX's key put
    # -0.0 below 0.0: zero scores gave other ids on the two backends).
    scores[0] = [-0.0, 0.0, -1.0, -0.0, -5, -6, -7]
    scores[1] = -np.arange(1, 8)
    scores[2] = [-1e-30, -0.0, -5, -6, -7, -8, -9]  # (-0.0 in float16)
    scores[3] = [-np.inf, -0.0, -np.inf, 0.0, -1, -2, -3]
    for dtype in ("float32", "float16"):
        actual = keras.ops.convert_to_numpy(class_argmax(scores.astype(dtype)))
        np.testing.assert_array_equal(actual, scores.astype(dtype).argmax(-1))
    assert scores.argmax(-1)[:4].tolist() == [0, 0, 1, 1]


def test_dtype_other_than_float32_is_refused():
    assert MeanIoU(3, dtype="float32").dtype == "float32"
    with pytest.raises(ValueError, match=r"return float32.*dtype='float16'"):
        MeanIoU(3, dtype="float16")
