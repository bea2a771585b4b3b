import keras
import numpy as np
import pytest

from seglayers import FocalLoss
from tests.harness import _check_config
from tests.losses.helpers import numpy_cross_entropy, random_case, softmax


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_gamma_zero_is_cross_entropy(ignore_class):
    y_true, logits = random_case(0, ignore_class=ignore_class)
    expected = numpy_cross_entropy(y_true, softmax(logits), ignore_class)
    loss = FocalLoss(gamma=0.0, from_logits=True, ignore_class=ignore_class)
    assert float(loss(y_true, logits)) == pytest.approx(expected, abs=1e-5)
    if ignore_class is None:
        keras_value = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y_true, logits
        )
        assert float(loss(y_true, logits)) == pytest.approx(
            float(keras_value), abs=1e-5
        )


def test_matches_the_formula():
    y_true, logits = random_case(1)
    probs = softmax(logits)
    p_t = np.take_along_axis(probs, y_true[..., None], -1)[..., 0]
    expected = (-((1 - p_t) ** 2) * np.log(p_t)).mean()
    assert float(FocalLoss(from_logits=True)(y_true, logits)) == pytest.approx(
        expected, abs=1e-5
    )


def test_binary_sigmoid_logits():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 2, size=(2, 8, 8, 1))
    z = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    p = 1 / (1 + np.exp(-z))
    expected = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean()
    loss = FocalLoss(gamma=0.0, from_logits=True)
    assert float(loss(y_true, z)) == pytest.approx(expected, abs=1e-5)


def test_all_ignored_is_finite():
    value = FocalLoss(ignore_class=255)(
        np.full((1, 4, 4), 255), np.ones((1, 4, 4, 2)) / 2
    )
    assert float(value) == 0.0


def test_float16_inputs_compute_in_float32():
    y_true, logits = random_case(3, size=64)
    half = keras.ops.cast(logits, "float16")
    value = FocalLoss(from_logits=True)(y_true, half)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    full = float(FocalLoss(from_logits=True)(y_true, logits))
    assert float(value) == pytest.approx(full, rel=1e-2)


@pytest.mark.parametrize("gamma", [-1, float("nan"), float("inf")])
def test_bad_gamma(gamma):
    # NaN passed `value < 0` and made the loss NaN; inf made it 0 everywhere.
    with pytest.raises(
        ValueError, match=rf"`gamma` must be a finite number >= 0.*{gamma}"
    ):
        FocalLoss(gamma=gamma)


def test_config():
    _check_config(FocalLoss, {"gamma": 1.5, "from_logits": True, "ignore_class": 0})


def test_first_argument_is_from_logits_as_in_every_loss():
    assert FocalLoss(True).from_logits is True
    assert FocalLoss(True).gamma == 2.0
    with pytest.raises(TypeError, match=r"pass the focusing parameter by name, e"):
        FocalLoss(2.0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_a_sure_pixel_trains_with_finite_gradients(gamma):
    # Pixel 0's logits lead by 30: its p_true rounds to exactly 1 in float32,
    # where the gradient of (1 - p_true)**gamma was inf for gamma < 1 and
    # made every weight NaN after one step.
    inputs = keras.Input((1, 2, 1))
    layer = keras.layers.Dense(2)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[30.0, -1.0]], "float32"), np.array([0.0, 1.0])])
    model.compile(keras.optimizers.SGD(0.1), FocalLoss(from_logits=True, gamma=gamma))
    x = np.array([[[[1.0], [0.0]]]], "float32")  # logits [30, 0] and [0, 1]
    model.train_on_batch(x, np.array([[[0, 1]]]))
    assert all(np.isfinite(w).all() for w in layer.get_weights())
