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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4, "spatial_dims": 3},
        {"filters": 4, "normalization": "group", "residual": True, "spatial_dims": 3},
        {"filters": 4, "normalization": "layer", "dropout": 0.1, "spatial_dims": 3},
        {"filters": 4, "normalization": "instance", "spatial_dims": 3},
    ],
    ids=["batch", "group-residual", "layer-dropout", "instance"],
)
def test_layer_3d(kwargs):
    run_layer_test(ConvBlock, kwargs, (2, 8, 8, 8, 3), (2, 8, 8, 8, 4))


def test_3d_block_uses_3d_layers():
    block = ConvBlock(4, normalization="group", residual=True, spatial_dims=3)
    block.build((None, 6, 8, 8, 3))
    assert all(isinstance(c, keras.layers.Conv3D) for c in block.convs)
    assert isinstance(block.shortcut, keras.layers.Conv3D)
    assert tuple(block.convs[0].kernel.shape) == (3, 3, 3, 3, 4)
    # Group normalization groups the channels (axis -1) in 3-D too: with 4
    # groups of 4 channels, each channel is normalized over the volume.
    assert block.norms[0].groups == 4 and block.norms[0].axis == -1
    x = np.random.default_rng(0).normal(3, 2, size=(2, 6, 8, 8, 4)).astype("float32")
    normalized = keras.ops.convert_to_numpy(block.norms[0](x))
    np.testing.assert_allclose(normalized.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=(1, 2, 3)), 1, atol=1e-2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_instance_normalization_normalizes_each_sample_and_channel(spatial_dims):
    block = ConvBlock(4, normalization="instance", spatial_dims=spatial_dims)
    spatial = (6, 8, 8)[-spatial_dims:]
    block.build((None, *spatial, 3))
    norm = block.norms[0]
    assert isinstance(norm, keras.layers.GroupNormalization) and norm.groups == 4
    # Per-channel scale and offset, no batch statistics to keep.
    assert [tuple(w.shape) for w in norm.weights] == [(4,), (4,)]
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=(2, *spatial, 4)) * np.arange(1, 5)
    normalized = keras.ops.convert_to_numpy(norm(x.astype("float32")))
    axes = tuple(range(1, spatial_dims + 1))
    np.testing.assert_allclose(normalized.mean(axis=axes), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=axes), 1, atol=1e-2)


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
            r"`normalization` must be one of 'batch', 'group', 'instance', 'layer' or "
            r"None\. "
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
        (
            {"filters": 4, "spatial_dims": 1},
            ValueError,
            r"`spatial_dims` must be 2, for images \(batch, height, width, "
            r"channels\), or 3, for volumes \(batch, depth, height, width, "
            r"channels\); pass the int\. Received: spatial_dims=1",
        ),
        (
            {"filters": 4, "spatial_dims": "3"},
            ValueError,
            r"`spatial_dims` must be 2.*Received: spatial_dims='3'",
        ),
        (
            {"filters": 4, "spatial_dims": 3.0},
            ValueError,
            r"Received: spatial_dims=3\.0",
        ),
        (
            {"filters": 4, "spatial_dims": True},
            ValueError,
            r"Received: spatial_dims=True",
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


@pytest.mark.parametrize(
    "spatial_dims, shape, match",
    [
        (
            2,
            (1, 8, 8, 8, 3),
            r"`ConvBlock` expects channels-last images of shape \(batch, height, "
            r"width, channels\) with a known number of channels, as "
            r"spatial_dims=2 sets; for volumes \(batch, depth, height, width, "
            r"channels\) pass spatial_dims=3\. "
            r"Received: input_shape=\(1, 8, 8, 8, 3\), spatial_dims=2",
        ),
        (
            3,
            (1, 8, 8, 3),
            r"`ConvBlock` expects channels-last volumes of shape \(batch, depth, "
            r"height, width, channels\) with a known number of channels, as "
            r"spatial_dims=3 sets; for images \(batch, height, width, "
            r"channels\) pass spatial_dims=2\. "
            r"Received: input_shape=\(1, 8, 8, 3\), spatial_dims=3",
        ),
    ],
)
def test_input_rank_must_match_spatial_dims(spatial_dims, shape, match):
    with pytest.raises(ValueError, match=match):
        ConvBlock(4, spatial_dims=spatial_dims)(keras.ops.ones(shape))


def test_a_built_block_checks_the_rank_with_its_input_spec():
    block = ConvBlock(4, spatial_dims=3)
    block(keras.ops.ones((1, 4, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"expected ndim=5, found ndim=4"):
        block(keras.ops.ones((1, 4, 4, 3)))
