"""What every seglayers loss shares: weights, and no plausible number from
a broken input (a clear error eagerly, NaN in traced code)."""

import json
import re

import keras
import numpy as np
import pytest

from seglayers import DiceCrossEntropyLoss, DiceLoss, FocalLoss
from tests.harness import TRACED_STEP
from tests.losses.helpers import random_case, softmax

LOSSES = [DiceLoss, DiceCrossEntropyLoss, FocalLoss]


def _value(loss, y_true, y_pred, **kwargs):
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred, **kwargs)))


def _traced_value(loss, y_true, y_pred, **kwargs):
    """The loss inside `evaluate`'s compiled step, as in `fit`."""
    model = keras.Sequential([keras.Input(y_pred.shape[1:]), keras.layers.Identity()])
    model.compile(loss=loss)
    return model.evaluate(y_pred, y_true, verbose=0, **kwargs)


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize(
    "reduction", ["none", None, "sum", "mean", "mean_with_sample_weight", "avg"]
)
def test_reductions_other_than_the_batch_value_are_refused(loss_class, reduction):
    # Each was silently the batch value before, the same as the default.
    with pytest.raises(
        ValueError,
        match=rf"^`{loss_class.__name__}` gives one value for the whole batch "
        r"\(Dice is a batch statistic.*cannot give one value per sample "
        r"\('none'\), nor sum or average per-sample values.*Leave `reduction` "
        r"at its default, reduction='sum_over_batch_size', and weigh samples "
        rf"with `sample_weight`\. Received: reduction={re.escape(repr(reduction))}$",
    ):
        loss_class(reduction=reduction)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_a_config_saved_by_earlier_releases_loads(loss_class):
    # As seglayers 0.1 wrote it: Keras's default reduction, weights as floats.
    config = {
        "name": "old",
        "reduction": "sum_over_batch_size",
        "from_logits": True,
        "ignore_class": 255,
        "class_weights": [0.5, 1.0, 2.0],
        "dtype": "float32",
    }
    saved = {
        "module": None,
        "class_name": loss_class.__name__,
        "config": config,
        "registered_name": f"seglayers>{loss_class.__name__}",
    }
    loss = keras.saving.deserialize_keras_object(saved)
    assert type(loss) is loss_class
    assert {k: loss.get_config()[k] for k in config} == config
    y_true, logits = random_case(8, classes=3, ignore_class=255)
    assert np.isfinite(_value(loss, y_true, logits))


@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_with_sample_weight"])
def test_a_reduction_earlier_releases_ignored_loads_as_the_default(reduction):
    # 0.1 accepted these and gave the batch value all the same; a model
    # compiled with one must still load (its compile config is rebuilt).
    config = {**FocalLoss().get_config(), "reduction": reduction}
    with pytest.warns(UserWarning, match=rf"saved with reduction='{reduction}'"):
        loss = FocalLoss.from_config(config)
    assert loss.get_config() == FocalLoss().get_config()


@pytest.mark.parametrize(
    "loss_class, name",
    [(DiceLoss, "smooth"), (FocalLoss, "gamma"), (DiceCrossEntropyLoss, "dice_weight")],
)
def test_an_infinite_argument_of_a_saved_loss_still_loads(loss_class, name):
    # New losses refuse inf (NaN, inf or zero losses); files saved with one
    # must still load with compile=True.
    config = {**loss_class().get_config(), name: float("inf")}
    with pytest.warns(UserWarning, match=rf"saved with \{{'{name}': inf\}}"):
        loss = loss_class.from_config(config)
    assert loss.get_config() == config


@pytest.mark.parametrize("loss_class", LOSSES)
def test_a_dtype_that_is_no_float_is_refused(loss_class):
    # Keras cast the probabilities to it: int32 made a Dice loss 0.
    for dtype in ("int32", "bool"):
        with pytest.raises(
            ValueError,
            match=rf"^`dtype` of `{loss_class.__name__}` must be a float type, "
            rf"such as 'float32'.*Received: dtype='{dtype}'$",
        ):
            loss_class(dtype=dtype)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_numpy_class_weights_are_stored_as_floats(loss_class):
    from_numbers = loss_class(class_weights=list(np.array([0.5, 1, 2], "float32")))
    from_array = loss_class(class_weights=np.array([0.5, 1.0, 2.0]))
    for loss in (from_numbers, from_array):
        config = loss.get_config()
        json.dumps(config)
        assert config["class_weights"] == [0.5, 1.0, 2.0]
        assert all(type(w) is float for w in config["class_weights"])
    # Keras's `class_weight` form, {class id: weight}, in any key order.
    from_dict = loss_class(class_weights={2: 2.0, 0: 0.5, 1: 1.0})
    assert from_dict.get_config()["class_weights"] == [0.5, 1.0, 2.0]
    y_true, logits = random_case(9, classes=3)
    assert _value(from_array, y_true, softmax(logits)) == pytest.approx(
        _value(loss_class(class_weights=[0.5, 1.0, 2.0]), y_true, softmax(logits))
    )


@pytest.mark.parametrize(
    "class_weights, problem",
    [
        ([1, -1], r"class_weights\[1\]=-1 is not"),
        (np.array([1.0, np.nan]), r"class_weights\[1\]=np\.float64\(nan\) is not"),
        (["1", "2"], r"class_weights\[0\]='1' is not"),
        ([True, False], r"class_weights\[0\]=True is not"),
        ([[1.0, 2.0]], r"class_weights\[0\]=\[1\.0, 2\.0\] is not"),
        (np.ones((2, 2)), r"this is a 2-D array"),
        ({0: 1.0, 2: 2.0}, r"a dict needs the keys 0, 1, \.\.\., one per class id"),
        ((1.0 for _ in range(2)), r"this is a generator"),
    ],
)
def test_bad_class_weights(class_weights, problem):
    with pytest.raises(
        ValueError,
        match=r"^`class_weights` must be a list \(or 1-D numpy array, or dict of "
        r"ids 0, 1, \.\.\.\) of non-negative numbers, one per class, e\.g\. "
        r"\[0\.5, 1\.0, 2\.0\]; " + problem + r"\. Received: class_weights=",
    ):
        FocalLoss(class_weights=class_weights)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_ignore_class_that_is_also_a_class_is_refused_at_the_first_call(loss_class):
    loss = loss_class(ignore_class=1)  # the number of classes is not known yet
    y_true, logits = random_case(0, classes=3)
    with pytest.raises(
        ValueError,
        match=r"`ignore_class`=1 is also a class id.*Received: ignore_class=1",
    ):
        loss(y_true, softmax(logits))


@TRACED_STEP
@pytest.mark.parametrize("loss_class", LOSSES)
def test_ids_outside_the_classes_are_an_error_eagerly_and_nan_when_traced(
    loss_class,
):
    y_true, logits = random_case(1, classes=3)
    y_true[0, 0, 0] = 7
    probs = softmax(logits).astype("float32")
    with pytest.raises(
        ValueError,
        match=r"class ids \[7\] outside \[0, 3\), and no `ignore_class` is set.*"
        r"Received: ignore_class=None",
    ):
        loss_class()(y_true, probs)
    assert np.isnan(_traced_value(loss_class(), y_true, probs))
    # With ignore_class=255, 255 is fine and 7 is still wrong.
    y_true[0, 0, 1] = 255
    with pytest.raises(ValueError, match=r"\[7\].*Received: ignore_class=255"):
        loss_class(ignore_class=255)(y_true, probs)


@TRACED_STEP
@pytest.mark.parametrize("loss_class", LOSSES)
def test_one_hot_rows_outside_0_1_are_an_error_eagerly_and_nan_when_traced(
    loss_class,
):
    y_true, logits = random_case(1, classes=3)
    y_true = np.eye(3, dtype="float32")[y_true]
    y_true[0, 0, 0] *= 2
    probs = softmax(logits).astype("float32")
    with pytest.raises(ValueError, match=r"values outside \[0, 1\] \(\[2\]\)"):
        loss_class()(y_true, probs)
    assert np.isnan(_traced_value(loss_class(), y_true, probs))


def test_fractional_ids_are_an_error():
    y_true, logits = random_case(2, classes=3)
    y_true = y_true.astype("float32")
    y_true[0, 0, 0] = 0.5  # a mask resized with interpolation
    with pytest.raises(
        ValueError, match=r"fractional ids \[0\.5\].*nearest.*ignore_class=None"
    ):
        DiceLoss(from_logits=True)(y_true, logits)


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("from_logits", [False, True])
def test_nan_predictions_give_nan(loss_class, from_logits):
    y_true, logits = random_case(3, classes=3)
    y_pred = (logits if from_logits else softmax(logits)).astype("float32")
    y_pred[1, 2, 3, 0] = np.nan
    assert np.isnan(_value(loss_class(from_logits=from_logits), y_true, y_pred))


@TRACED_STEP
@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_logits_read_as_probabilities_are_an_error_eagerly_and_nan_when_traced(
    loss_class, channels
):
    y_true, logits = random_case(4, classes=max(channels, 2))
    logits = logits[..., :channels] * 3
    with pytest.raises(
        ValueError,
        match=r"values outside \[0, 1\].*these are logits.*Pass from_logits=True.*"
        r"Received: from_logits=False",
    ):
        loss_class()(y_true, logits)
    assert np.isnan(_traced_value(loss_class(), y_true, logits))


@TRACED_STEP
@pytest.mark.parametrize("loss_class", LOSSES)
def test_probabilities_read_as_logits_are_an_error_eagerly_and_nan_when_traced(
    loss_class,
):
    y_true, logits = random_case(5, classes=3)
    probs = softmax(logits).astype("float32")
    with pytest.raises(
        ValueError,
        match=r"every pixel of `y_pred` is a probability distribution.*"
        r"Pass from_logits=False.*Received: from_logits=True",
    ):
        loss_class(from_logits=True)(y_true, probs)
    assert np.isnan(_traced_value(loss_class(from_logits=True), y_true, probs))


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("channels", [1, 3])
def test_an_empty_batch_gives_zero(loss_class, channels):
    y_true = np.zeros((0, 8, 8), "int32")
    y_pred = np.full((0, 8, 8, channels), 0.5, "float32")
    assert _value(loss_class(), y_true, y_pred) == 0.0
    assert _value(loss_class(), y_true, y_pred, sample_weight=np.ones((0,))) == 0.0


@pytest.mark.parametrize("loss_class", LOSSES)
def test_one_hot_target_against_one_sigmoid_channel(loss_class):
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 2, size=(2, 8, 8))
    probs = rng.uniform(0.01, 0.99, size=(2, 8, 8, 1)).astype("float32")
    one_hot = np.eye(2, dtype="float32")[ids]
    assert _value(loss_class(), one_hot, probs) == pytest.approx(
        _value(loss_class(), ids, probs), abs=1e-6
    )


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("shape", [(3,), (3, 8, 8), (3, 8, 8, 1)])
def test_sample_weight_weighs_samples(loss_class, shape):
    y_true, logits = random_case(7, batch=3, classes=3, ignore_class=255)
    loss = loss_class(from_logits=True, ignore_class=255)
    weight = np.ones(shape, "float32")
    weight[0], weight[1] = 2.0, 0.0  # twice the first sample, not the second
    repeated = [0, 0, 2]
    expected = _value(loss, y_true[repeated], logits[repeated])
    assert _value(loss, y_true, logits, sample_weight=weight) == pytest.approx(
        expected, rel=1e-5
    )


def test_sample_weight_in_fit_and_evaluate():
    y_true, logits = random_case(8, batch=4, classes=3)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Identity()])
    model.compile(loss=DiceCrossEntropyLoss(from_logits=True))
    weight = np.array([1.0, 0.0, 1.0, 0.0])
    weighted = model.evaluate(logits, y_true, sample_weight=weight, verbose=0)
    kept = [0, 2]
    assert weighted == pytest.approx(
        model.evaluate(logits[kept], y_true[kept], verbose=0), rel=1e-5
    )


def _weights_case(bad):
    y_true, logits = random_case(5, batch=2, classes=3)
    return y_true, softmax(logits).astype("float32"), np.array([1.0, bad])


@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_weights_below_0_or_not_finite_are_an_error_eagerly(loss_class, bad):
    # -1 gave a DiceLoss of 0 and a DiceCrossEntropyLoss of -1.4e7.
    y_true, probs, weight = _weights_case(bad)
    with pytest.raises(
        ValueError,
        match=rf"^`sample_weight` of `{loss_class.__name__}` must be finite and "
        r">= 0 \(0 leaves a pixel out\)\. Received: sample_weight with values "
        rf"such as {re.escape(repr([bad]))}$",
    ):
        loss_class()(y_true, probs, sample_weight=weight)


@TRACED_STEP
@pytest.mark.parametrize("loss_class", LOSSES)
@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_weights_below_0_or_not_finite_are_nan_when_traced(loss_class, bad):
    y_true, probs, weight = _weights_case(bad)
    weight = weight.astype("float32")
    assert np.isnan(_traced_value(loss_class(), y_true, probs, sample_weight=weight))


def test_sample_weight_of_another_shape_is_refused():
    y_true, logits = random_case(9, batch=2, classes=3)
    with pytest.raises(ValueError, match=r"Received: sample_weight shape \(8,\)"):
        FocalLoss(from_logits=True)(y_true, logits, sample_weight=np.ones((8,)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_softmax_is_no_logits(dtype):
    # Its rows sum to 1 only within the type's rounding (0.008 off in
    # bfloat16): with a float32 tolerance it passed as logits, silently.
    rng = np.random.default_rng(0)
    scores = keras.ops.cast(rng.normal(size=(2, 8, 8, 21)) * 3, dtype)
    probabilities = keras.ops.softmax(scores, axis=-1)
    y_true = rng.integers(0, 21, size=(2, 8, 8))
    with pytest.raises(ValueError, match="these are softmax outputs, not logits"):
        DiceCrossEntropyLoss(from_logits=True)(y_true, probabilities)
    assert np.isfinite(float(DiceCrossEntropyLoss()(y_true, probabilities)))
