import keras
import numpy as np
import pytest

from seglayers import AttentionGate
from tests.harness import run_layer_test


def test_layer():
    run_layer_test(
        AttentionGate, {"filters": 2}, [(2, 8, 8, 4), (2, 8, 8, 6)], (2, 8, 8, 4)
    )


def test_output_is_the_skip_scaled_by_coefficients_in_0_1():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, size=(1, 6, 6, 3)).astype("float32")
    g = rng.normal(size=(1, 6, 6, 5)).astype("float32")
    gate = AttentionGate(4)
    ratio = keras.ops.convert_to_numpy(gate([x, g])) / x
    # One coefficient per pixel, shared by the channels.
    np.testing.assert_allclose(ratio, ratio[..., :1].repeat(3, axis=-1), rtol=1e-5)
    assert np.all((ratio > 0) & (ratio < 1))


def test_mismatched_sizes():
    with pytest.raises(ValueError, match=r"same height and width; upsample `g`"):
        AttentionGate(2)([keras.ops.ones((1, 8, 8, 4)), keras.ops.ones((1, 4, 4, 4))])


def test_needs_two_inputs():
    with pytest.raises(ValueError, match=r"expects a list of two inputs `\[x, g\]`"):
        AttentionGate(2).build((1, 8, 8, 4))
