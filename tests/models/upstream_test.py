"""The Keras bugs `seglayers.models._steps` works around, on plain Keras.

Each test does what a user would do with Keras alone and asserts what
should happen; each is a strict expected failure, so it fails (XPASS) the
day Keras fixes the bug, and that part of the workaround can go.
Keras 3.15.1, TensorFlow 2.21, JAX 0.10.2. Not reported upstream that we
could find; keras-team/keras#21019 restored the variables after an
interrupted JAX `fit` (not `evaluate`, and not a first step that fails).
"""

import keras
import numpy as np
import pytest

IMAGES = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
MASKS = np.random.default_rng(1).integers(0, 2, (4, 8, 8)).astype("int32")


class _Plain(keras.Model):
    """A subclassed model with no `build` of its own, as users write."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(2, 3, padding="same", activation="softmax")

    def call(self, x):
        return self.conv(x)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow")
@pytest.mark.xfail(
    strict=True,
    raises=ValueError,  # "Creating variables on a non-first call..." and such
    reason="Keras builds the model and its metrics inside the first trace of "
    "the step's tf.function; when it raises, the retry cannot create them",
)
def test_tensorflow_fit_works_after_a_first_fit_that_failed():
    model = _Plain()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy())
    with pytest.raises(ValueError):  # Targets of another size.
        model.fit(IMAGES, MASKS[:, :4, :4], batch_size=2, verbose=0)
    model.fit(IMAGES, MASKS, batch_size=2, verbose=0)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX")
@pytest.mark.xfail(
    strict=True,
    raises=TypeError,  # "'NoneType' object is not callable": no value
    reason="Keras's JAX trainer takes the values off the variables during "
    "evaluate and puts them back only when it ends without an error",
)
def test_jax_weights_survive_an_evaluate_that_failed():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(2, 3, padding="same", activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy())
    model.fit(IMAGES, MASKS, batch_size=2, verbose=0)
    before = model.predict(IMAGES, verbose=0)
    with pytest.raises(ValueError):  # Targets of another size.
        model.evaluate(IMAGES, MASKS[:, :4, :4], batch_size=2, verbose=0)
    np.testing.assert_array_equal(model.predict(IMAGES, verbose=0), before)
