"""One meaning for masks and predictions (`seglayers/_masks.py`, `_targets.py`).

Every `(y_true, y_pred)` form goes to every metric and every loss: they
accept the same forms, with values equal to a small numpy reference, and
refuse the rest with the same exception and message.
"""

import keras
import numpy as np
import pytest

from seglayers import (
    DiceCrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    MeanDice,
    MeanIoU,
    OneHotMask,
    PerClassIoU,
    PixelAccuracy,
    _masks,
    _palettes,
    _targets,
)
from tests.metrics.helpers import numpy_confusion, numpy_scores

METRICS = [MeanIoU, PerClassIoU, MeanDice, PixelAccuracy]
LOSSES = [DiceLoss, DiceCrossEntropyLoss, FocalLoss]
IGNORE = 255


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ids(classes, seed=0):
    ids = np.random.default_rng(seed).integers(0, classes, size=(2, 4, 4, 1))
    ids[0, 0] = IGNORE  # one ignored row of pixels
    return ids


def _true(form, classes):
    ids = _ids(classes)
    if form == "ids (B,H,W,1)":
        return ids
    if form == "ids (B,H,W)":
        return ids[..., 0]
    return _np(OneHotMask(classes, ignore_class=IGNORE)(ids))  # zero rows


def _pred(form, classes):
    """`(y_pred, from_logits, probabilities (B,H,W,C>=2))`."""
    rng = np.random.default_rng(1)
    channels = 1 if classes == 2 and "sigmoid" in form else classes
    logits = rng.normal(scale=2.0, size=(2, 4, 4, channels)).astype("float32")
    if channels == 1:
        p = 1 / (1 + np.exp(-logits))
        probs = np.concatenate([1 - p, p], axis=-1)
        return (logits, True, probs) if "logits" in form else (p, False, probs)
    probs = _softmax(logits)
    if form == "logits":
        return logits, True, probs
    if form == "one-hot":
        one_hot = np.eye(classes, dtype="float32")[probs.argmax(-1)]
        return one_hot, False, one_hot
    return probs, False, probs


def _reference_metrics(y_true_ids, pred_ids, classes):
    matrix = numpy_confusion(y_true_ids, pred_ids, classes, IGNORE)
    iou, dice = numpy_scores(matrix)
    return {
        MeanIoU: np.nanmean(iou),
        PerClassIoU: iou,
        MeanDice: np.nanmean(dice),
        PixelAccuracy: np.trace(matrix) / matrix.sum(),
    }


def _reference_losses(y_true_ids, probs, classes):
    valid = y_true_ids[..., 0] != IGNORE
    target = np.eye(classes)[np.where(valid, y_true_ids[..., 0], 0)][valid]
    p = np.clip(probs[valid], 1e-7, 1.0)
    inter, t_sum = (target * p).sum(0), target.sum(0)
    dice_per_class = 1 - 2 * inter / (t_sum + p.sum(0))
    scored = t_sum > 0
    if probs.shape[-1] == 2 and classes == 2:
        scored = scored & (np.arange(2) == 1)  # binary: the foreground only
    dice = dice_per_class[scored].mean() if scored.any() else 0.0
    p_true = (target * p).sum(-1)
    ce = -np.log(p_true).mean()
    focal = (-((1 - p_true) ** 2) * np.log(p_true)).mean()
    return {DiceLoss: dice, DiceCrossEntropyLoss: dice + ce, FocalLoss: focal}


def _metric_value(metric_class, classes, y_true, y_pred, threshold):
    metric = metric_class(classes, ignore_class=IGNORE, threshold=threshold)
    metric.update_state(y_true, y_pred)
    result = metric.result()
    if isinstance(result, dict):
        return np.array([float(_np(v)) for v in result.values()])
    return float(_np(result))


TRUE_FORMS = ["ids (B,H,W,1)", "ids (B,H,W)", "one-hot, ignored zero rows"]
PRED_FORMS = [
    (3, "probabilities"),
    (3, "logits"),
    (3, "one-hot"),
    (2, "one sigmoid channel"),
    (2, "one sigmoid channel, logits"),
]


@pytest.mark.parametrize("true_form", TRUE_FORMS)
@pytest.mark.parametrize("classes, pred_form", PRED_FORMS)
def test_every_metric_and_loss_accepts_the_same_forms(true_form, classes, pred_form):
    y_true = _true(true_form, classes)
    y_pred, from_logits, probs = _pred(pred_form, classes)
    ids = _ids(classes)
    num_classes = 1 if y_pred.shape[-1] == 1 else classes
    threshold = 0.0 if from_logits else 0.5
    metrics = _reference_metrics(ids, probs.argmax(-1)[..., None], classes)
    for metric_class in METRICS:
        actual = _metric_value(metric_class, num_classes, y_true, y_pred, threshold)
        np.testing.assert_allclose(actual, metrics[metric_class], rtol=1e-5)
    losses = _reference_losses(ids, probs, classes)
    for loss_class in LOSSES:
        loss = loss_class(from_logits=from_logits, ignore_class=IGNORE)
        actual = float(_np(loss(y_true, y_pred)))
        np.testing.assert_allclose(actual, losses[loss_class], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("true_form", TRUE_FORMS)
@pytest.mark.parametrize("dims", [3, 4])
def test_metrics_take_predicted_ids(true_form, dims):
    y_true = _true(true_form, 3)
    probs = _pred("probabilities", 3)[2]
    pred_ids = probs.argmax(-1)[..., None] if dims == 4 else probs.argmax(-1)
    expected = _reference_metrics(_ids(3), probs.argmax(-1)[..., None], 3)
    for metric_class in METRICS:
        actual = _metric_value(metric_class, 3, y_true, pred_ids.astype("int32"), 0.5)
        np.testing.assert_allclose(actual, expected[metric_class], rtol=1e-5)


def _invalid(case):
    ids, probs = _ids(3), _pred("probabilities", 3)[0]
    if case == "one-hot y_true, wrong channel count":
        return np.eye(4, dtype="float32")[ids[..., 0] % 4], probs
    if case == "y_true of another rank":
        return ids[0, ..., 0], probs
    if case == "mismatched shapes":
        return ids[:, :2], probs
    if case == "out-of-range ids":
        ids[1, 1, 1] = 7
        return ids, probs
    if case == "fractional ids":
        ids = ids.astype("float32")
        ids[1, 1, 1] = 0.5
        return ids, probs
    if case == "infinite ids":
        ids = ids.astype("float32")
        ids[1, 1, 1] = np.inf
        return ids, probs
    if case == "colours of one-hot shape":
        palette = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 0]], "uint8")
        return palette[ids[..., 0] % 3], probs
    if case == "one-hot with NaN":
        one_hot = np.eye(3, dtype="float32")[ids[..., 0] % 3]
        one_hot[1, 1, 1, 2] = np.nan
        return one_hot, probs
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, match",
    [
        ("one-hot y_true, wrong channel count", r"Cannot match `y_true` to `y_pred`"),
        ("y_true of another rank", r"Cannot match `y_true` to `y_pred`"),
        ("mismatched shapes", r"`y_true` and `y_pred` cover different pixels"),
        ("out-of-range ids", r"`y_true` holds class ids \[7\] outside \[0, 3\)"),
        ("fractional ids", r"`y_true` holds fractional ids \[0\.5\]"),
        # Was "fractional ids [inf]", with numpy's RuntimeWarning for inf % 1.
        ("infinite ids", r"`y_true` holds NaN or infinite ids \[inf\]"),
        # Were read as one-hot: their arg-max a plausible class.
        (
            "colours of one-hot shape",
            r"^`y_true` has the shape of one-hot masks \(\(2, 4, 4, 3\): the last "
            r"axis one per class\), but holds values outside \[0, 1\] \(\[128, "
            r"255\]\): a one-hot row holds 0 and 1 \(soft labels in between; all "
            r"zeros for an ignored pixel\)\. Colour masks \(RGB\) need their "
            r"palette: `seglayers\.OneHotMask\(num_classes, palette=\.\.\.\)`; "
            r"class ids go as `\(\.\.\., H, W\)` or `\(\.\.\., H, W, 1\)`\. "
            r"Received: y_true of shape \(2, 4, 4, 3\)$",
        ),
        ("one-hot with NaN", r"but holds NaN: a one-hot row"),
    ],
)
def test_every_metric_and_loss_refuses_the_same_forms_alike(case, match):
    y_true, y_pred = _invalid(case)
    messages = set()
    calls = [
        lambda c=c: c(3, ignore_class=IGNORE).update_state(y_true, y_pred)
        for c in METRICS
    ]
    calls += [lambda c=c: c(ignore_class=IGNORE)(y_true, y_pred) for c in LOSSES]
    for call in calls:
        with pytest.raises(ValueError, match=match) as info:
            call()
        messages.add(str(info.value))
    assert len(messages) == 1, messages


def test_boolean_masks_are_ids_0_and_1():
    mask = _ids(2, seed=3) == 1
    probs = _pred("probabilities", 2)[2]
    expected_ids = mask.astype("int32")
    for metric_class in METRICS:
        expected = _metric_value(metric_class, 2, expected_ids, probs, 0.5)
        actual = _metric_value(metric_class, 2, mask, probs, 0.5)
        np.testing.assert_allclose(actual, expected, rtol=1e-6)
    for loss_class in LOSSES:
        loss = loss_class()
        np.testing.assert_allclose(
            _np(loss(mask, probs)), _np(loss(expected_ids, probs)), rtol=1e-6
        )
    np.testing.assert_array_equal(
        _np(OneHotMask(2)(mask)), _np(OneHotMask(2)(expected_ids))
    )


@pytest.mark.parametrize(
    "mask, dtype",
    [
        (np.ones((2, 4, 4, 1), "complex64"), "complex64"),
        (np.full((2, 4, 4, 1), "1"), "<U1"),
    ],
)
def test_masks_of_no_number_type_are_refused_by_name(mask, dtype):
    probs = _pred("probabilities", 3)[0]

    def match(name):
        return (
            rf"`{name}` holds {dtype} values, but a mask holds class ids .* "
            r"Convert the masks to integer ids, e\.g\. `mask\.astype\('int32'\)`\. "
            rf"Received: {name} dtype {dtype}"
        )

    for metric_class in METRICS:
        with pytest.raises(TypeError, match=match("y_true")):
            metric_class(3).update_state(mask, probs)
    for loss_class in LOSSES:  # Before Keras casts y_true (a warning only).
        with pytest.raises(TypeError, match=match("y_true")):
            loss_class()(mask, probs)
    if dtype == "complex64":  # numpy strings reach a layer as another dtype.
        with pytest.raises(TypeError, match=match("inputs")):
            OneHotMask(3)(mask)


def test_narrow_integer_ids_are_compared_as_int32():
    # uint8 255 against ignore_class=-1 once wrapped to "equal": ignored.
    y_true = np.array([[[0, 1], [2, 255]]], "uint8")
    probs = _pred("probabilities", 3)[0][:1, :2, :2]
    for metric_class in METRICS:
        with pytest.raises(ValueError, match=r"class ids \[255\] outside \[0, 3\)"):
            metric_class(3, ignore_class=-1).update_state(y_true, probs)
    for loss_class in LOSSES:
        with pytest.raises(ValueError, match=r"class ids \[255\] outside \[0, 3\)"):
            loss_class(ignore_class=-1)(y_true, probs)


@pytest.mark.parametrize("dtype", ["int64", "uint32", "uint64"])
def test_wide_integer_ids_beyond_int32_stay_out_of_range(dtype):
    # A cast to int32 wrapped 2**32 + 1 to 1, a class (JAX's conversion too).
    big = np.iinfo(dtype).max if dtype == "uint32" else 2**32 + 1
    y_true = np.array([[[0, 1], [2, big]]], dtype)
    probs = _pred("probabilities", 3)[0][:1, :2, :2]
    expected = [0, 1, 2, np.iinfo("int32").max]
    np.testing.assert_array_equal(_np(_masks.int32_ids(y_true)).ravel(), expected)
    match = r"class ids \[\d+\] outside \[0, 3\)"
    for metric_class in METRICS:
        with pytest.raises(ValueError, match=match):
            metric_class(3).update_state(y_true, probs)
    for loss_class in LOSSES:
        with pytest.raises(ValueError, match=match):
            loss_class()(y_true, probs)
    with pytest.raises(ValueError, match=match):
        OneHotMask(3)(_masks.mask_tensor(y_true))
    if keras.backend.backend() == "tensorflow":  # Tensors of 64 bits.
        import tensorflow as tf

        wide = tf.constant(y_true.astype(dtype))
        np.testing.assert_array_equal(_np(_masks.int32_ids(wide)).ravel(), expected)
    negative = np.array([-(2**32) + 2], "int64")  # Wrapped to 2 before.
    assert _np(_masks.int32_ids(negative))[0] == np.iinfo("int32").min


def test_metrics_refuse_scores_with_the_wrong_channel_count():
    y_true, probs = _ids(3), _pred("probabilities", 3)[0]
    for metric_class in METRICS:
        with pytest.raises(
            ValueError, match=r"`y_pred` scores need 4 channels.*check `num_classes`"
        ):
            metric_class(4, y_pred_format="scores").update_state(y_true, probs)


def test_one_sigmoid_channel_logits_need_a_logit_threshold_or_from_logits():
    y_true, (logits, _, _) = _ids(2), _pred("one sigmoid channel, logits", 2)
    for metric_class in METRICS:
        with pytest.raises(ValueError, match=r"holds logits.*Pass threshold=0"):
            metric_class(1, ignore_class=IGNORE).update_state(y_true, logits)
    for loss_class in LOSSES:
        with pytest.raises(ValueError, match=r"these are logits.*from_logits=True"):
            loss_class(ignore_class=IGNORE)(y_true, logits)


# --- the functions themselves -------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 2, 3), (1, 2, 3, 1)])
def test_target_ids_from_ids(shape):
    values = np.array([[[0.0, 2.0, 255.0], [1.0, 0.5, 9.0]]]).reshape(shape)
    ids, valid, bad = _targets.target_ids(values, (1, 2, 3), 3, ignore_class=255)
    np.testing.assert_array_equal(_np(valid), [[[1, 1, 0], [1, 0, 0]]])
    np.testing.assert_array_equal(_np(bad), [[[0, 0, 0], [0, 1, 1]]])
    np.testing.assert_array_equal(_np(ids)[_np(valid)], [0, 2, 1])


def test_target_ids_and_one_hot_from_one_hot():
    one_hot = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])
    ids, valid, bad = _targets.target_ids(one_hot, (1, 3), 2)
    np.testing.assert_array_equal(_np(valid), [[1, 0, 1]])
    np.testing.assert_array_equal(_np(ids)[_np(valid)], [0, 1])
    assert not _np(bad).any()
    target, valid, _ = _targets.target_one_hot(np.array([[0, 255, 1]]), (1, 3), 2, 255)
    np.testing.assert_array_equal(_np(target), one_hot)


def test_predicted_ids_of_every_form():
    scores = np.array([[[0.1, 0.7, 0.2], [np.nan, 0.0, 1.0]]], "float32")
    np.testing.assert_array_equal(_np(_masks.predicted_ids(scores, 3)), [[1, -1]])
    sigmoid = np.array([[[0.2], [0.9]]], "float32")
    np.testing.assert_array_equal(_np(_masks.predicted_ids(sigmoid, 1)), [[0, 1]])
    logits = np.array([[[-2.0], [3.0]]], "float32")
    ids = _masks.predicted_ids(logits, 2, threshold=0.0)
    np.testing.assert_array_equal(_np(ids), [[0, 1]])
    with pytest.raises(ValueError, match=r"`MeanIoU`: `y_pred` has one channel"):
        _masks.predicted_ids(logits, 2, name="MeanIoU")
    ids = np.array([[[2], [0]]], "int32")
    np.testing.assert_array_equal(_np(_masks.predicted_ids(ids, 3)), [[2, 0]])


def test_model_predicted_ids_take_the_threshold_from_the_model():
    class Logits:
        output_activation = None

    logits = np.array([[[-0.5], [0.3]]], "float32")
    np.testing.assert_array_equal(
        _masks.model_predicted_ids(Logits(), logits), [[0, 1]]
    )
    with pytest.raises(ValueError, match=r"`threshold`=0.5 is a probability"):
        _masks.model_predicted_ids(None, logits)


def test_bad_ids_message_names_the_ids():
    message = _masks.bad_ids_message("The mask", 3, 255, np.array([7, 3, 0.5, 7]))
    assert message.startswith(
        "The mask holds class ids [3, 7] outside [0, 3) and fractional ids [0.5], "
        "and `ignore_class` is 255."
    )
    assert message.endswith("Received: ignore_class=255")
    with pytest.raises(ValueError, match=r"holds class ids \[-1\] outside \[0, 2\)"):
        _masks.raise_on_bad_ids(np.array([-1, 0]), np.array([True, False]), 2, None)
    _masks.raise_on_bad_ids(np.array([1]), np.array([False]), 2, None)  # no error


def test_binary_masks_of_0_and_255_are_named_as_such():
    # The message's advice, ignore_class=255, would drop every foreground pixel.
    mask = np.zeros((1, 4, 4, 1), "uint8")
    mask[0, :2] = 255
    probs = np.full((1, 4, 4, 1), 0.9, "float32")
    for metric in (MeanIoU(1), MeanIoU(2, y_pred_format="ids")):
        with pytest.raises(
            ValueError,
            match=r"look like binary masks saved as 0 and 255: save \(or "
            r"map\) them as 0 and 1",
        ):
            metric.update_state(mask, probs)
    for classes, ids in [(3, [0, 255]), (2, [0, 1, 255])]:
        # Three classes, or a 1 besides: 255 may well be unlabelled pixels.
        with pytest.raises(ValueError) as info:
            _masks.raise_on_bad_ids(np.array(ids), np.array(ids) == 255, classes, None)
        assert "binary" not in str(info.value)


def test_palette_ids_and_check_palette():
    palette = _palettes.check_palette([[0, 0, 0], [255, 0, 0], [9, 9, 9]], 2, 255)
    colours = np.array([[[255, 0, 0], [9, 9, 9], [0, 0, 0]]], "uint8")
    ids = _palettes.palette_ids(colours, palette, 2, 255)
    np.testing.assert_array_equal(_np(ids), [[1, 255, 0]])
    with pytest.raises(
        ValueError,
        match=r"colours not in `palette` \(each a triple of whole numbers in "
        r"\[0, 255\]\): \[\[1, 2, 3\]\]",
    ):
        _palettes.palette_ids(np.array([[[1, 2, 3]]]), palette, 2, 255)
    with pytest.raises(ValueError, match=r"`palette` repeats a colour"):
        _palettes.check_palette([[0, 0, 0], [0, 0, 0]], 2)
    with pytest.raises(ValueError, match=r"list of 2 `\[r, g, b\]` colours"):
        _palettes.check_palette([[0, 0, 0]], 2)
