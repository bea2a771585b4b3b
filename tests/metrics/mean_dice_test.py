import keras
import numpy as np
import pytest

from seglayers import DiceLoss, MeanDice
from tests.harness import _check_config
from tests.metrics.helpers import numpy_confusion, numpy_scores, random_segmentation


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_matches_numpy(ignore_class):
    y_true, logits = random_segmentation(1, ignore_class=ignore_class, absent=0)
    metric = MeanDice(5, ignore_class=ignore_class, class_names=list("abcde"))
    metric.update_state(y_true, logits)
    result = metric.result()
    _, dice = numpy_scores(numpy_confusion(y_true, logits.argmax(-1), 5, ignore_class))
    assert float(result["mean_dice"]) == pytest.approx(np.nanmean(dice), abs=1e-6)
    np.testing.assert_allclose(
        [float(result[f"dice/{c}"]) for c in "abcde"], dice, atol=1e-6
    )


def test_config():
    _check_config(MeanDice, {"num_classes": 2, "ignore_class": 9})


# === per_sample=True ===


def numpy_dice_per_sample(y_true, y_pred_ids, num_classes, ignore_class=None):
    """(mean over samples of each sample's mean Dice, per-class means over
    the samples where the class is present), with a numpy loop."""
    sample_means, per_class = [], [[] for _ in range(num_classes)]
    for truth, pred in zip(y_true, y_pred_ids):
        matrix = numpy_confusion(truth, pred, num_classes, ignore_class)
        _, dice = numpy_scores(matrix)
        if matrix.sum() == 0:
            continue
        sample_means.append(np.nanmean(dice))
        for c in range(num_classes):
            if not np.isnan(dice[c]):
                per_class[c].append(dice[c])
    per_class = [np.mean(v) if v else np.nan for v in per_class]
    return np.mean(sample_means), np.array(per_class)


def _volumes(seed, batch=3, size=8, num_classes=4, ignore_class=None):
    """`(batch, size, size, size)` ids and `(..., num_classes)` logits; the
    last class absent from the first sample's truth and prediction."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, size=(batch, size, size, size))
    logits = rng.normal(size=y_true.shape + (num_classes,)).astype("float32")
    y_true[0][y_true[0] == num_classes - 1] = 0
    logits[0, ..., num_classes - 1] = -10.0
    if ignore_class is not None:
        y_true[:, :, : size // 4] = ignore_class
    return y_true, logits


@pytest.mark.parametrize("ignore_class", [None, 255])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_per_sample_matches_numpy(spatial_dims, ignore_class):
    if spatial_dims == 2:
        y_true, logits = random_segmentation(2, ignore_class=ignore_class, absent=0)
        y_true[1][y_true[1] == 3] = 2  # class 3 missed in one image only
        num_classes = 5
    else:
        y_true, logits = _volumes(3, ignore_class=ignore_class)
        num_classes = 4
    names = [str(c) for c in range(num_classes)]
    metric = MeanDice(
        num_classes, ignore_class=ignore_class, class_names=names, per_sample=True
    )
    # Two updates: the mean is over every sample seen.
    metric.update_state(y_true[:1], logits[:1])
    metric.update_state(y_true[1:, ..., None], logits[1:])
    result = metric.result()
    mean, per_class = numpy_dice_per_sample(
        y_true, logits.argmax(-1), num_classes, ignore_class
    )
    assert float(result["mean_dice"]) == pytest.approx(mean, abs=1e-6)
    np.testing.assert_allclose(
        [float(result[f"dice/{c}"]) for c in names], per_class, atol=1e-6
    )
    metric.reset_state()  # the per-sample sums too
    assert np.isnan(float(metric.result()["mean_dice"]))


def test_per_sample_absent_classes_and_empty_samples():
    y_true = np.zeros((3, 2, 4, 4), "int32")
    y_pred = np.zeros((3, 2, 4, 4), "int32")
    y_true[0, 0, 0, :2] = 1
    y_pred[0, 0, 0, :2] = 1  # perfect; class 2 absent from both: left out
    y_pred[1, 0, 0, 0] = 2  # class 2 predicted, not in the truth: Dice 0
    y_true[2] = 255  # all ignored: the sample is left out
    metric = MeanDice(3, ignore_class=255, per_sample=True)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx((1.0 + (62 / 63 + 0) / 2) / 2)


def test_per_sample_weight_leaves_samples_out():
    y_true, logits = _volumes(4, batch=4, num_classes=3)
    metric = MeanDice(3, per_sample=True)
    metric.update_state(y_true, logits, sample_weight=np.array([1, 0, 1, 0]))
    expected, _ = numpy_dice_per_sample(y_true[::2], logits[::2].argmax(-1), 3)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_per_sample_in_fit_and_under_xla(jit_compile):
    y_true, logits = _volumes(5, batch=4, num_classes=3, ignore_class=255)
    # An identity to train with a zero learning rate: the logits as given.
    identity = keras.layers.Dense(3, kernel_initializer="identity")
    model = keras.Sequential([keras.Input(logits.shape[1:]), identity])
    metric = MeanDice(3, ignore_class=255, per_sample=True)
    model.compile(
        keras.optimizers.SGD(0.0),
        loss=DiceLoss(from_logits=True, ignore_class=255),
        metrics=[metric],
        jit_compile=jit_compile,
    )
    history = model.fit(logits, y_true, batch_size=3, verbose=0).history
    expected, _ = numpy_dice_per_sample(y_true, logits.argmax(-1), 3, 255)
    assert history["mean_dice"][0] == pytest.approx(expected, abs=1e-6)


def test_per_sample_needs_a_batch_axis():
    with pytest.raises(
        ValueError,
        match=r"`MeanDice` with per_sample=True needs a batch axis: .*`y\[None\]` "
        r"for a single sample\. Received: y_pred with class ids of shape \(4, 4\)",
    ):
        MeanDice(2, per_sample=True).update_state(np.zeros((4, 4)), np.zeros((4, 4)))


def test_per_sample_must_be_a_bool():
    with pytest.raises(
        TypeError, match=r"`per_sample` must be True or False\. Received: "
    ):
        MeanDice(2, per_sample="yes")


def test_per_sample_config():
    _check_config(MeanDice, {"num_classes": 3, "per_sample": True})
    assert MeanDice(3).get_config()["per_sample"] is False
