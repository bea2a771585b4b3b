import keras
import numpy as np
import pytest

from seglayers import AttentionGate
from tests.harness import run_layer_test


def test_layer():
    run_layer_test(
        AttentionGate, {"filters": 2}, [(2, 8, 8, 4), (2, 8, 8, 6)], (2, 8, 8, 4)
    )


def test_layer_3d():
    run_layer_test(
        AttentionGate,
        {"filters": 2, "spatial_dims": 3},
        [(2, 8, 8, 8, 4), (2, 8, 8, 8, 6)],
        (2, 8, 8, 8, 4),
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


def test_mismatched_batch_sizes():
    # One gating signal was broadcast over a batch of two.
    with pytest.raises(ValueError, match=r"the same batch size"):
        AttentionGate(2)([keras.ops.ones((2, 8, 8, 4)), keras.ops.ones((1, 8, 8, 4))])


def test_a_gate_built_on_free_sizes_checks_each_call():
    # Built for any size, it broadcast a `g` of one sample and one pixel
    # over `x`, silently.
    gate = AttentionGate(2)
    gate.build([(None, None, None, 4), (None, None, None, 6)])
    x = keras.ops.ones((3, 8, 8, 4))
    assert tuple(gate([x, keras.ops.ones((3, 8, 8, 6))]).shape) == (3, 8, 8, 4)
    with pytest.raises(ValueError, match=r"the same batch size and at the same"):
        gate([x, keras.ops.ones((1, 1, 1, 6))])


def test_unknown_channels_are_named():
    # Keras's "unsupported operand type(s) for %: 'NoneType' and 'int'".
    with pytest.raises(ValueError, match=r"needs the channels of `x` and `g`"):
        AttentionGate(2).build([(None, 8, 8, None), (None, 8, 8, 4)])


def test_mismatched_3d_sizes():
    x, g = keras.ops.ones((1, 4, 8, 8, 4)), keras.ops.ones((1, 2, 8, 8, 4))
    with pytest.raises(ValueError, match=r"same depth, height and width; upsample `g`"):
        AttentionGate(2, spatial_dims=3)([x, g])


@pytest.mark.parametrize(
    "spatial_dims, rank, match",
    [
        (
            2,
            5,
            r"expects `x` and `g` of rank 4, \(batch, height, width, channels\), "
            r"as spatial_dims=2 sets; pass spatial_dims=2 for images, 3 for "
            r"volumes\. Received: input_shape=.*, spatial_dims=2",
        ),
        (
            3,
            4,
            r"expects `x` and `g` of rank 5, \(batch, depth, height, width, "
            r"channels\), as spatial_dims=3 sets.*spatial_dims=3",
        ),
    ],
)
def test_input_rank_must_match_spatial_dims(spatial_dims, rank, match):
    inputs = [keras.ops.ones((1,) + (4,) * (rank - 2) + (3,))] * 2
    with pytest.raises(ValueError, match=match):
        AttentionGate(2, spatial_dims=spatial_dims)(inputs)


def test_bad_spatial_dims():
    with pytest.raises(ValueError, match=r"Received: spatial_dims=4"):
        AttentionGate(2, spatial_dims=4)


def test_needs_two_inputs():
    with pytest.raises(ValueError, match=r"expects a list of two inputs `\[x, g\]`"):
        AttentionGate(2).build((1, 8, 8, 4))
