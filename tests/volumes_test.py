"""Masks, metrics and losses on volumes `(batch, depth, height, width, C)`.

The same numpy references as `tests/masks_test.py`, on 5-D tensors: every
target form against every metric and loss, `OneHotMask`, sample weights,
and the metrics and losses compiled with XLA.
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
)
from tests.masks_test import IGNORE, _reference_losses, _reference_metrics, _softmax

METRICS = [MeanIoU, PerClassIoU, MeanDice, PixelAccuracy]
LOSSES = [DiceLoss, DiceCrossEntropyLoss, FocalLoss]
SHAPE = (2, 4, 5, 6)  # (batch, depth, height, width)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _ids(classes, seed=0):
    ids = np.random.default_rng(seed).integers(0, classes, size=SHAPE + (1,))
    ids[0, 1] = IGNORE  # one ignored slice
    ids[1, :, 0] = IGNORE  # and one ignored row through every slice
    return ids


def _true(form, classes):
    ids = _ids(classes)
    if form == "ids (B,D,H,W,1)":
        return ids
    if form == "ids (B,D,H,W)":
        return ids[..., 0]
    return _np(OneHotMask(classes, ignore_class=IGNORE)(ids))


def _pred(form, classes):
    """`(y_pred, from_logits, probabilities (B,D,H,W,C>=2))`."""
    rng = np.random.default_rng(1)
    channels = 1 if "sigmoid" in form else classes
    logits = rng.normal(scale=2.0, size=SHAPE + (channels,)).astype("float32")
    if channels == 1:
        p = 1 / (1 + np.exp(-logits))
        return p, False, np.concatenate([1 - p, p], axis=-1)
    probs = _softmax(logits)
    return (logits, True, probs) if form == "logits" else (probs, False, probs)


def _result(metric):
    result = metric.result()
    if isinstance(result, dict):
        return np.array([float(_np(v)) for v in result.values()])
    return _np(result)


@pytest.mark.parametrize(
    "true_form", ["ids (B,D,H,W,1)", "ids (B,D,H,W)", "one-hot, ignored zero rows"]
)
@pytest.mark.parametrize(
    "classes, pred_form",
    [(3, "probabilities"), (3, "logits"), (2, "one sigmoid channel")],
)
def test_every_metric_and_loss_on_volumes_matches_numpy(true_form, classes, pred_form):
    y_true = _true(true_form, classes)
    y_pred, from_logits, probs = _pred(pred_form, classes)
    ids = _ids(classes)
    num_classes = 1 if y_pred.shape[-1] == 1 else classes
    metrics = _reference_metrics(ids, probs.argmax(-1)[..., None], classes)
    for metric_class in METRICS:
        metric = metric_class(num_classes, ignore_class=IGNORE)
        metric.update_state(y_true, y_pred)
        np.testing.assert_allclose(_result(metric), metrics[metric_class], rtol=1e-5)
    losses = _reference_losses(ids, probs, classes)
    for loss_class in LOSSES:
        loss = loss_class(from_logits=from_logits, ignore_class=IGNORE)
        actual = float(_np(loss(y_true, y_pred)))
        np.testing.assert_allclose(actual, losses[loss_class], rtol=1e-4, atol=1e-6)


def test_one_hot_mask_on_volumes():
    layer = OneHotMask(3, ignore_class=IGNORE)
    ids = _ids(3)
    one_hot = _np(layer(ids))
    assert one_hot.shape == SHAPE + (3,)
    assert layer.compute_output_shape(ids.shape) == SHAPE + (3,)
    labelled = ids[..., 0] != IGNORE
    np.testing.assert_array_equal(one_hot.sum(-1), labelled)
    np.testing.assert_array_equal(one_hot.argmax(-1)[labelled], ids[..., 0][labelled])
    np.testing.assert_array_equal(_np(layer.sample_weights(ids)), labelled)


@pytest.mark.parametrize("weight_shape", ["per volume", "per voxel"])
def test_sample_weight_on_volumes(weight_shape):
    y_true, (y_pred, _, _) = _ids(3), _pred("probabilities", 3)
    # Weights that keep the first volume only.
    weight = np.array([1.0, 0.0])
    if weight_shape == "per voxel":
        weight = np.broadcast_to(weight[:, None, None, None], SHAPE)
    weighted, first = MeanIoU(3, ignore_class=IGNORE), MeanIoU(3, ignore_class=IGNORE)
    weighted.update_state(y_true, y_pred, sample_weight=weight)
    first.update_state(y_true[:1], y_pred[:1])
    np.testing.assert_array_equal(
        _np(weighted.confusion_matrix()), _np(first.confusion_matrix())
    )
    loss = DiceCrossEntropyLoss(ignore_class=IGNORE)
    np.testing.assert_allclose(
        _np(loss(y_true, y_pred, sample_weight=weight)),
        _np(loss(y_true[:1], y_pred[:1])),
        rtol=1e-5,
    )


def test_metrics_and_losses_compile_with_xla_on_volumes():
    rng = np.random.default_rng(0)
    volumes = rng.uniform(size=SHAPE + (1,)).astype("float32")
    masks = _ids(3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(SHAPE[1:] + (1,)), keras.layers.Conv3D(3, 1, activation="softmax")]
    )
    metrics = [
        MeanIoU(3, ignore_class=IGNORE),
        PerClassIoU(3, ignore_class=IGNORE, class_names=["a", "b", "c"]),
        MeanDice(3, ignore_class=IGNORE),
        PixelAccuracy(3, ignore_class=IGNORE),
    ]
    loss = DiceCrossEntropyLoss(ignore_class=IGNORE)
    model.compile("adam", loss=loss, metrics=metrics, jit_compile=True)
    logs = model.evaluate(volumes, masks, batch_size=2, return_dict=True, verbose=0)
    probs = _np(model(volumes))
    expected = _reference_metrics(masks, probs.argmax(-1)[..., None], 3)
    assert logs["mean_iou"] == pytest.approx(expected[MeanIoU], rel=1e-5)
    assert logs["mean_dice"] == pytest.approx(expected[MeanDice], rel=1e-5)
    assert logs["pixel_accuracy"] == pytest.approx(expected[PixelAccuracy], rel=1e-5)
    np.testing.assert_allclose(
        [logs[f"iou/{name}"] for name in "abc"], expected[PerClassIoU], rtol=1e-5
    )
    reference = _reference_losses(masks, probs, 3)[DiceCrossEntropyLoss]
    assert logs["loss"] == pytest.approx(reference, rel=1e-4)
