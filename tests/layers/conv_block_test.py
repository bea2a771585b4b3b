import keras
import numpy as np
import pytest

from seglayers import ConvBlock
from tests.harness import run_layer_test


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4},
        {"filters": 6, "normalization": "group", "residual": True, "dropout": 0.1},
        {"filters": 4, "num_convs": 3, "normalization": "layer", "activation": "gelu"},
        {"filters": 4, "normalization": None, "kernel_size": 5},
    ],
    ids=["default", "group-residual-dropout", "layer-3convs-gelu", "plain-k5"],
)
def test_layer(kwargs):
    run_layer_test(ConvBlock, kwargs, (2, 8, 8, 3), (2, 8, 8, kwargs["filters"]))


def test_layer_structure():
    block = ConvBlock(4, num_convs=3, normalization=None, residual=True)
    block.build((None, 8, 8, 3))
    convs = [
        layer
        for layer in block._flatten_layers()
        if isinstance(layer, keras.layers.Conv2D)
    ]
    assert len(convs) == 4  # three 3x3 + the 1x1 shortcut
    assert all(conv.use_bias for conv in convs)
    batch_norm = ConvBlock(4)
    batch_norm.build((None, 8, 8, 3))
    # No bias before a normalization: 2 kernels + 2 × (gamma, beta, mean, var).
    assert len(batch_norm.weights) == 2 + 2 * 4


def test_group_normalization_uses_a_divisor_of_the_channels():
    block = ConvBlock(12, normalization="group")
    assert block.norms[0].groups == 12
    assert ConvBlock(96, normalization="group").norms[0].groups == 32
    assert ConvBlock(40, normalization="group").norms[0].groups == 20


def test_residual_adds_the_shortcut():
    block = ConvBlock(
        3, num_convs=1, normalization=None, activation="linear", residual=True
    )
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(block(x))
    expected = keras.ops.convert_to_numpy(block.convs[0](x) + block.shortcut(x))
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"filters": 0},
            ValueError,
            r"`filters` must be a positive integer.*filters=0",
        ),
        (
            {"filters": 2.5},
            TypeError,
            r"`filters` must be a positive integer.*filters=2.5",
        ),
        ({"filters": 4, "num_convs": 0}, ValueError, r"num_convs=0"),
        (
            {"filters": 4, "normalization": "bach"},
            ValueError,
            r"`normalization` must be one of 'batch', 'group', 'layer' or None\. "
            r"Received: normalization='bach'",
        ),
        ({"filters": 4, "activation": "relux"}, ValueError, r"activation='relux'"),
        ({"filters": 4, "activation": len}, TypeError, r"must be the name of a Keras"),
        (
            {"filters": 4, "dropout": 1.0},
            ValueError,
            r"`dropout` must be in \[0, 1\).*dropout=1.0",
        ),
        (
            {"filters": 4, "residual": "yes"},
            TypeError,
            r"`residual` must be True or False",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConvBlock(**kwargs)


def test_bad_input_rank():
    with pytest.raises(
        ValueError, match=r"expects channels-last images.*\(None, 8, 3\)"
    ):
        ConvBlock(4).build((None, 8, 3))
