import keras
import numpy as np
import pytest

from seglayers import DiceLoss
from tests.harness import _check_config
from tests.losses.helpers import numpy_dice_loss, random_case, softmax


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_matches_numpy(ignore_class):
    y_true, logits = random_case(0, ignore_class=ignore_class)
    probs = softmax(logits)
    expected = numpy_dice_loss(y_true, probs, ignore_class)
    loss = DiceLoss(ignore_class=ignore_class)
    assert float(loss(y_true, probs)) == pytest.approx(expected, abs=1e-5)
    from_logits = DiceLoss(from_logits=True, ignore_class=ignore_class)
    assert float(from_logits(y_true, logits)) == pytest.approx(expected, abs=1e-5)


def test_one_hot_targets_equal_class_ids():
    y_true, logits = random_case(1, ignore_class=255)
    one_hot = np.eye(4, dtype="float32")[np.where(y_true == 255, 0, y_true)]
    one_hot[y_true == 255] = 0  # ignored pixels: all-zero rows
    loss = DiceLoss(from_logits=True, ignore_class=255)
    assert float(DiceLoss(from_logits=True)(one_hot, logits)) == pytest.approx(
        float(loss(y_true[..., None], logits)), abs=1e-6
    )


def test_ignored_pixels_do_not_matter():
    y_true, logits = random_case(2, ignore_class=255)
    changed = logits.copy()
    changed[y_true == 255] = 100.0
    loss = DiceLoss(from_logits=True, ignore_class=255)
    assert float(loss(y_true, logits)) == pytest.approx(float(loss(y_true, changed)))


def test_class_weights():
    y_true, logits = random_case(3)
    weights = [0.0, 1.0, 2.0, 0.5]
    expected = numpy_dice_loss(y_true, softmax(logits), class_weights=np.array(weights))
    loss = DiceLoss(from_logits=True, class_weights=weights)
    assert float(loss(y_true, logits)) == pytest.approx(expected, abs=1e-5)


def test_binary_scores_the_foreground():
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 2, size=(2, 8, 8, 1))
    probs = rng.uniform(size=(2, 8, 8, 1)).astype("float32")
    t, p = y_true.astype(float), probs.astype(float)
    expected = 1 - 2 * (t * p).sum() / (t.sum() + p.sum())
    assert float(DiceLoss()(y_true, probs)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_empty_masks_are_finite(binary):
    channels = 1 if binary else 3
    y_true = np.zeros((2, 8, 8), "int32") if binary else np.full((2, 8, 8), 255)
    y_pred = np.full((2, 8, 8, channels), 0.5, "float32")
    value = float(DiceLoss(ignore_class=255)(y_true, y_pred))
    assert np.isfinite(value) and value == 0.0


def test_float16_512_masks_equal_float32():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 3, size=(2, 512, 512))
    logits = rng.normal(size=(2, 512, 512, 3)).astype("float32")
    probs32 = softmax(logits).astype("float32")
    half = keras.ops.cast(probs32, "float16")
    full = float(DiceLoss()(y_true, probs32))
    value = DiceLoss()(y_true, half)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(float(value))
    assert float(value) == pytest.approx(full, abs=1e-3)


@pytest.mark.parametrize(
    "y_true_shape, y_pred_shape, match",
    [
        ((2, 8, 8), (2, 4, 4, 3), r"cover different pixels"),
        ((2, 8, 8, 2), (2, 8, 8, 3), r"cover different pixels|Cannot match"),
        ((8, 8), (2, 8, 8, 3), r"Cannot match `y_true` to `y_pred`"),
    ],
)
def test_shape_mismatch(y_true_shape, y_pred_shape, match):
    with pytest.raises(ValueError, match=match):
        DiceLoss()(np.zeros(y_true_shape, "int32"), np.zeros(y_pred_shape, "float32"))


def test_class_weights_of_the_wrong_length():
    loss = DiceLoss(class_weights=[1.0, 2.0])
    with pytest.raises(
        ValueError,
        match=r"`class_weights` has 2 values but the "
        r"predictions have 3 classes",
    ):
        loss(np.zeros((1, 4, 4)), np.ones((1, 4, 4, 3)) / 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"class_weights": [1, -1]}, ValueError, r"non-negative numbers"),
        ({"from_logits": "yes"}, TypeError, r"from_logits='yes'"),
        ({"ignore_class": 2.5}, TypeError, r"ignore_class=2.5"),
        # smooth was taken as float(smooth): NaN (a NaN loss), -1, and None
        # failed in float() without the argument's name.
        ({"smooth": float("nan")}, ValueError, r"`smooth` must be .*smooth=nan"),
        ({"smooth": -1.0}, ValueError, r"`smooth` must be a finite number >= 0"),
        # inf made the loss inf / inf = NaN.
        ({"smooth": float("inf")}, ValueError, r"finite number >= 0.*smooth=inf"),
        ({"smooth": None}, ValueError, r"Received: smooth=None"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DiceLoss(**kwargs)


def test_config():
    _check_config(
        DiceLoss,
        {
            "from_logits": True,
            "ignore_class": 255,
            "class_weights": [1.0, 2.0],
            "smooth": 1.0,
        },
    )
