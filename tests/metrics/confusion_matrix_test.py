"""What every confusion-matrix metric shares: XLA, weights and bad inputs."""

import warnings

import keras
import numpy as np
import pytest

import seglayers
from seglayers import MeanIoU
from seglayers.metrics._counting import count_bins
from tests.harness import TRACED_STEP
from tests.metrics.helpers import numpy_confusion, random_segmentation, traced_update


def _matrix(metric):
    return keras.ops.convert_to_numpy(metric.confusion_matrix())


_LOSSES = {
    "dice": seglayers.DiceLoss,
    "dice_ce": seglayers.DiceCrossEntropyLoss,
    "focal": seglayers.FocalLoss,
}


def _compiled_run(jit_compile, weights=None):
    """fit one epoch, then evaluate, of a tiny softmax model with every
    seglayers loss (one per output) and every metric."""
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(8, 16, 16, 3)).astype("float32")
    masks = rng.integers(0, 3, size=(8, 16, 16, 1))
    masks[:, :2] = 255
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    probs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    outputs = {name: keras.layers.Identity(name=name)(probs) for name in _LOSSES}
    model = keras.Model(inputs, outputs)
    if weights is not None:
        model.set_weights(weights)
    model.compile(
        "adam",
        loss={name: loss(ignore_class=255) for name, loss in _LOSSES.items()},
        metrics={
            "dice": [
                seglayers.MeanIoU(3, ignore_class=255),
                seglayers.PerClassIoU(3, ignore_class=255, class_names=["a", "b", "c"]),
                seglayers.MeanDice(3, ignore_class=255),
                seglayers.PixelAccuracy(3, ignore_class=255),
            ]
        },
        jit_compile=jit_compile,
    )
    targets = {name: masks for name in _LOSSES}
    initial = model.get_weights()
    history = model.fit(
        images, targets, batch_size=4, epochs=1, shuffle=False, verbose=0
    ).history
    model.set_weights(initial)  # evaluate what both runs start from
    result = model.evaluate(images, targets, batch_size=4, return_dict=True, verbose=0)
    return initial, {k: v[0] for k, v in history.items()}, result


@pytest.mark.slow
def test_every_metric_and_loss_compiles_under_xla_with_the_same_numbers():
    # Keras turns jit_compile on for TensorFlow whenever a GPU is visible;
    # bincount, the obvious way to count, does not compile there.
    weights, plain_fit, plain = _compiled_run(jit_compile=False)
    _, xla_fit, xla = _compiled_run(jit_compile=True, weights=weights)
    assert sorted(xla) == sorted(plain)
    assert sum("loss" in key for key in plain) == 4  # the total, then one each
    assert sum("iou" in key for key in plain) == 4  # mean_iou, iou/a, b, c
    for key in plain:
        if "loss" in key:
            assert xla[key] == pytest.approx(plain[key], rel=1e-5), key
            assert xla_fit[key] == pytest.approx(plain_fit[key], rel=1e-4), key
        else:  # the same weights, so the same pixel counts, but for a pixel
            # at a near-tie that XLA's convolutions round to the other class
            assert xla[key] == pytest.approx(plain[key], abs=2e-3), key
            assert xla_fit[key] == pytest.approx(plain_fit[key], rel=1e-3, abs=2e-3), (
                key
            )
        assert np.isfinite(plain[key]), key


def test_count_bins_equals_numpy_for_any_length():
    rng = np.random.default_rng(1)
    for length, size in ((2, 7), (443, 16 * 16 * 3), (70000, 1000), (5, 0)):
        indices = rng.integers(0, length, size=(size,)).astype("int32")
        actual = keras.ops.convert_to_numpy(count_bins(indices, length))
        np.testing.assert_array_equal(actual, np.bincount(indices, minlength=length))


@pytest.mark.parametrize(
    "weight_shape", [(2,), (2, 8, 8), (2, 8, 8, 1)], ids=["B", "BHW", "BHW1"]
)
def test_sample_weight_per_sample_or_per_pixel(weight_shape):
    # 8 columns and a batch of 2: a (B,) weight read against trailing axes
    # would fail; a batch of 8 would silently weigh columns.
    y_true, logits = random_segmentation(2, batch=2, size=8, num_classes=3)
    weight = np.zeros(weight_shape, "float32")
    weight[1] = 1.0  # the second sample only
    metric = MeanIoU(3)
    metric.update_state(y_true, logits, sample_weight=weight)
    expected = numpy_confusion(y_true[1], logits[1].argmax(-1), 3)
    np.testing.assert_array_equal(_matrix(metric), expected)


def test_boolean_sample_weight_keeps_and_leaves_out_pixels():
    # TensorFlow could not compare bool weights with 0 ("Cannot convert 0 to
    # EagerTensor of dtype bool"); JAX took them.
    y_true, logits = random_segmentation(2, batch=2, size=8, num_classes=3)
    keep = np.random.default_rng(0).random((2, 8, 8)) < 0.5
    boolean, numeric = MeanIoU(3), MeanIoU(3)
    boolean.update_state(y_true, logits, sample_weight=keep)
    numeric.update_state(y_true, logits, sample_weight=keep.astype("float32"))
    np.testing.assert_array_equal(_matrix(boolean), _matrix(numeric))
    expected = numpy_confusion(y_true[keep], logits.argmax(-1)[keep], 3)
    np.testing.assert_array_equal(_matrix(boolean), expected)


def test_scores_of_another_class_count_are_named_as_such():
    # The message blamed `y_true` alone.
    with pytest.raises(
        ValueError,
        match=r"If `y_pred` holds scores, it needs 3 channels \(one per class; 1 "
        r"for binary\), not 4: check `num_classes`\. Received: y_true shape "
        r"\(1, 2\), y_pred shape \(1, 2, 4\)",
    ):
        MeanIoU(3).update_state(np.array([[0, 1]]), np.zeros((1, 2, 4), "float32"))


def test_per_sample_weight_when_the_batch_equals_the_width():
    y_true, logits = random_segmentation(3, batch=8, size=8, num_classes=3)
    weight = np.array([1, 0, 0, 0, 0, 0, 0, 1], "float32")
    metric = MeanIoU(3)
    metric.update_state(y_true, logits, sample_weight=weight)
    keep = weight.astype(bool)
    expected = numpy_confusion(y_true[keep], logits[keep].argmax(-1), 3)
    np.testing.assert_array_equal(_matrix(metric), expected)


@pytest.mark.parametrize(
    "weight, error, match",
    [
        (
            np.ones((3,)),
            ValueError,
            r"one weight per sample, shape \(2,\), or one per pixel.*"
            r"Received: sample_weight shape \(3,\)",
        ),
        # Before: TensorFlow's "Cannot convert 0 to EagerTensor of dtype string".
        (
            np.array(["1", "0"]),
            TypeError,
            r"^`sample_weight` must hold numbers \(floats, integers or bools\), "
            r"one per sample or pixel: .*Received: sample_weight of dtype <U1$",
        ),
    ],
)
def test_sample_weight_of_another_shape_or_of_text_is_refused(weight, error, match):
    y_true, logits = random_segmentation(3, batch=2, size=8, num_classes=3)
    with pytest.raises(error, match=match):
        MeanIoU(3).update_state(y_true, logits, sample_weight=weight)


def test_fractional_sample_weight_is_refused_eagerly():
    y_true, logits = random_segmentation(3, batch=2, size=8, num_classes=3)
    with pytest.raises(
        ValueError,
        match=r"`sample_weight` must be 0 \(leave the pixel out\) or 1.*"
        r"Received: sample_weight with values such as \[0.5\]",
    ):
        MeanIoU(3).update_state(y_true, logits, sample_weight=np.array([1.0, 0.5]))


@TRACED_STEP
def test_fractional_sample_weight_in_weighted_metrics_gives_nan():
    y_true, logits = random_segmentation(4, batch=4, size=8, num_classes=3)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Identity()])
    metric = MeanIoU(3)
    model.compile(loss=seglayers.DiceLoss(), weighted_metrics=[metric])
    weight = np.array([1.0, 0.5, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # checked below
        result = model.evaluate(
            logits, y_true, sample_weight=weight, return_dict=True, verbose=0
        )
    assert np.isnan(result["mean_iou"])
    with pytest.warns(UserWarning, match=r"other than 0 or 1, so the result is NaN"):
        assert np.isnan(float(metric.result()))


def test_nan_predictions_are_counted_nowhere_and_reported():
    y_true, logits = random_segmentation(5, batch=2, size=8, num_classes=3)
    logits[0, 0, :3, 1] = np.nan  # three pixels, one NaN channel each
    metric = MeanIoU(3)
    metric.update_state(y_true, logits)
    labelled = np.ones(y_true.shape, bool)
    labelled[0, 0, :3] = False
    expected = numpy_confusion(y_true[labelled], logits.argmax(-1)[labelled], 3)
    np.testing.assert_array_equal(_matrix(metric), expected)
    assert metric.out_of_range_count == 3
    with pytest.warns(UserWarning, match=r"3 pixels had no class.*NaN prediction"):
        metric.result()


def test_nan_predictions_inside_fit_are_counted_nowhere():
    y_true, logits = random_segmentation(5, batch=4, size=8, num_classes=3)
    logits[1, 2, 3] = np.nan
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Identity()])
    metric = MeanIoU(3)
    model.compile(loss=seglayers.DiceLoss(from_logits=True), metrics=[metric])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # checked below
        model.evaluate(logits, y_true, batch_size=2, verbose=0)
    labelled = ~np.isnan(logits).any(-1)
    expected = numpy_confusion(y_true[labelled], logits.argmax(-1)[labelled], 3)
    np.testing.assert_array_equal(_matrix(metric), expected)
    assert metric.out_of_range_count == 1
    with pytest.warns(UserWarning, match=r"1 pixels had no class"):
        metric.result()


@TRACED_STEP
def test_sigmoid_logits_inside_fit_are_reported_with_the_threshold_fix():
    # The warning named ids and NaN only, not the likeliest cause with one
    # channel: a logits model (output_activation=None) read with 0.5.
    rng = np.random.default_rng(6)
    y_true = rng.integers(0, 2, size=(4, 8, 8, 1))
    logits = rng.normal(scale=3.0, size=(4, 8, 8, 1)).astype("float32")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Identity()])
    metric = MeanIoU(1)
    model.compile(loss=seglayers.DiceLoss(from_logits=True), metrics=[metric])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # checked below
        model.evaluate(logits, y_true, batch_size=2, verbose=0)
    outside = int(((logits < 0) | (logits > 1)).sum())
    assert metric.out_of_range_count == outside > 0
    with pytest.warns(
        UserWarning,
        match=rf"{outside} pixels had no class: .*a NaN prediction, or a "
        r"one-channel prediction outside \[0, 1\] \(a logit\) read with "
        r"`threshold`=0\.5: for logits pass threshold=0; they were not counted",
    ):
        metric.result()


def test_sigmoid_logits_with_a_probability_threshold_are_refused():
    rng = np.random.default_rng(6)
    y_true = rng.integers(0, 2, size=(2, 8, 8, 1))
    logits = rng.normal(scale=3.0, size=(2, 8, 8, 1)).astype("float32")
    with pytest.raises(
        ValueError,
        match=r"outside \[0, 1\].*holds logits, but `threshold`=0.5.*"
        r"Pass threshold=0 for logits.*Received: threshold=0.5",
    ):
        MeanIoU(1).update_state(y_true, logits)
    MeanIoU(1, threshold=0.0).update_state(y_true, logits)  # what it should be


@TRACED_STEP
def test_fractional_ids_are_not_rounded_into_a_class():
    y_true, y_pred = np.array([[0.0, 1.0, 0.5, 2.0]]), np.array([[0, 1, 1, 2]])
    with pytest.raises(ValueError, match=r"fractional ids \[0\.5\].*nearest"):
        MeanIoU(3).update_state(y_true, y_pred)  # eagerly, as the losses do
    metric = MeanIoU(3)
    traced_update(metric, y_true, y_pred)
    np.testing.assert_array_equal(np.diag(_matrix(metric)), [1, 1, 1])
    assert metric.out_of_range_count == 1


@TRACED_STEP
def test_one_hot_rows_outside_0_1_are_not_counted_as_a_class():
    y_true = np.eye(3, dtype="float32")[np.array([[0, 1, 2, 2]])]
    y_true[0, 3] *= 255  # a colour, read as one-hot: its arg-max class 2
    y_pred = np.array([[0, 1, 2, 2]])
    with pytest.raises(ValueError, match=r"values outside \[0, 1\] \(\[255\]\)"):
        MeanIoU(3).update_state(y_true, y_pred)
    metric = MeanIoU(3)
    traced_update(metric, y_true, y_pred)
    np.testing.assert_array_equal(np.diag(_matrix(metric)), [1, 1, 1])
    assert metric.out_of_range_count == 1


def test_empty_batch_leaves_the_state_unchanged():
    y_true, logits = random_segmentation(7, batch=2, size=8, num_classes=3)
    metric = MeanIoU(3)
    metric.update_state(y_true, logits)
    before = _matrix(metric)
    metric.update_state(y_true[:0], logits[:0])
    metric.update_state(y_true[:0], logits[:0], sample_weight=np.ones((0,)))
    np.testing.assert_array_equal(_matrix(metric), before)


def test_one_hot_target_against_one_sigmoid_channel():
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 2, size=(2, 8, 8))
    probs = rng.uniform(size=(2, 8, 8, 1)).astype("float32")
    from_ids, from_one_hot = MeanIoU(1), MeanIoU(1)
    from_ids.update_state(ids, probs)
    from_one_hot.update_state(np.eye(2, dtype="float32")[ids], probs)
    np.testing.assert_array_equal(_matrix(from_one_hot), _matrix(from_ids))


def _bincount_compile_error():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.errors.InvalidArgumentError
    if keras.backend.backend() == "jax":
        import jax

        return jax.errors.ConcretizationTypeError
    return None


@pytest.mark.skipif(_bincount_compile_error() is None, reason="TF and JAX only")
@pytest.mark.xfail(
    strict=True,
    raises=_bincount_compile_error(),
    reason="Keras 3.15: keras.ops.bincount(x, minlength=n) has a data-dependent "
    "size, so XLA (TensorFlow) and jax.jit refuse it; count_bins uses "
    "segment_sum. Fails the day Keras makes a given minlength compile.",
)
def test_plain_keras_bincount_does_not_compile():
    # Class ids computed in the step, as a metric gets them (TensorFlow's XLA
    # would specialise on an int argument's values and compile).
    scores = np.random.default_rng(9).normal(size=(5, 4)).astype("float32")

    def histogram(x):
        return keras.ops.bincount(keras.ops.argmax(x, axis=-1), minlength=4)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(histogram, jit_compile=True)
    else:
        import jax

        compiled = jax.jit(histogram)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(compiled(keras.ops.convert_to_tensor(scores))),
        np.bincount(scores.argmax(-1), minlength=4),
    )


@pytest.mark.parametrize("metric", ["MeanIoU", "MeanDice", "PixelAccuracy"])
def test_keras_callbacks_know_that_higher_is_better(metric, tmp_path):
    # With mode="auto" (the default), Keras's EarlyStopping and
    # ModelCheckpoint raised "isn't able to automatically determine whether
    # that metric should be maximized or minimized".
    metric = getattr(seglayers, metric)(3)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(3, 1)])
    model.compile("sgd", seglayers.DiceLoss(from_logits=True), metrics=[metric])
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor=f"val_{metric.name}"
    )
    images, masks = np.ones((2, 4, 4, 3), "float32"), np.zeros((2, 4, 4), "int32")
    model.fit(
        images,
        masks,
        validation_data=(images, masks),
        callbacks=[checkpoint, keras.callbacks.EarlyStopping(f"val_{metric.name}")],
        verbose=0,
    )
    assert checkpoint.monitor_op is keras.ops.greater
    assert (tmp_path / "best.keras").exists()


@pytest.mark.parametrize(
    "metric, default",
    # PerClassIoU always used its name: a guard that it still does.
    [("MeanIoU", "iou"), ("MeanDice", "dice"), ("PerClassIoU", "iou")],
)
def test_a_renamed_metric_logs_its_classes_under_its_name(metric, default):
    # Two renamed metrics (one per output of a model, or a global and a
    # per-sample Dice) wrote the same `iou/<class>` keys, the last one kept.
    cls = getattr(seglayers, metric)
    y_true = np.array([[[0, 1], [1, 1]]])
    y_pred = keras.ops.one_hot(np.array([[[0, 1], [0, 1]]]), 2)
    keys = {}
    for name in ("default", None, "road_score"):
        # name=None is the default name too, not Keras's numbered one.
        named = {} if name == "default" else {"name": name}
        score = cls(2, class_names=["bg", "fg"], **named)
        score.update_state(y_true, y_pred)
        keys[name] = {k: float(v) for k, v in score.result().items()}
    assert keys[None] == keys["default"]
    # The same values; `<default>/<class>` and the default name renamed.
    renamed = {
        key.replace(f"{default}/", "road_score/").replace(cls(2).name, "road_score"): v
        for key, v in keys[None].items()
    }
    assert f"{default}/fg" in keys[None]
    assert keys["road_score"] == renamed


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_dtype_saved_by_0_1_0_loads_as_float32(dtype):
    # 0.1.0 took any dtype; one is refused now, and a file holding one loads.
    with pytest.raises(ValueError, match=rf"Received: dtype='{dtype}'"):
        seglayers.MeanDice(3, dtype=dtype)
    y_true, y_pred = random_segmentation(0, num_classes=3, ignore_class=255)
    for cls in (MeanIoU, seglayers.MeanDice, seglayers.PixelAccuracy):
        config = keras.saving.serialize_keras_object(cls(3, ignore_class=255))
        config["config"]["dtype"] = dtype
        with pytest.warns(UserWarning, match=rf"saved with dtype='{dtype}'; it loads"):
            loaded = keras.saving.deserialize_keras_object(config, safe_mode=True)
        assert type(loaded) is cls and loaded.dtype == "float32"
        fresh = cls(3, ignore_class=255)
        loaded.update_state(y_true, y_pred)
        fresh.update_state(y_true, y_pred)
        np.testing.assert_array_equal(loaded.result(), fresh.result())
