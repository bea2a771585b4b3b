import keras
import numpy as np
import pytest

from seglayers import ASPP
from tests.harness import run_layer_test


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4, "dilation_rates": [2, 3]},
        {"filters": 4, "dilation_rates": [1, 2, 4], "separable": True, "dropout": 0.0},
    ],
    ids=["plain", "separable-no-dropout"],
)
def test_layer(kwargs):
    run_layer_test(ASPP, kwargs, (2, 8, 8, 3), (2, 8, 8, 4))


def test_layer_3d():
    kwargs = {"filters": 4, "dilation_rates": [2], "spatial_dims": 3}
    run_layer_test(ASPP, kwargs, (2, 6, 8, 8, 3), (2, 6, 8, 8, 4))


@pytest.mark.parametrize("separable", [False, True])
def test_parameter_count(separable):
    channels, filters, rates = 6, 4, [6, 12, 18]
    layer = ASPP(filters, dilation_rates=rates, separable=separable)
    layer.build((None, 16, 16, channels))
    norm = 4 * filters  # gamma, beta, moving mean and variance
    atrous = 9 * channels + channels * filters if separable else 9 * channels * filters
    expected = (
        (channels * filters + norm)  # 1x1 branch
        + len(rates) * (atrous + norm)  # atrous branches
        + (channels * filters + norm)  # image pooling
        + ((len(rates) + 2) * filters * filters + norm)  # projection
    )
    assert layer.count_params() == expected


def test_image_pooling_branch_is_the_same_everywhere():
    # The pooled features are one value per channel and image ...
    layer = ASPP(3, dilation_rates=[2], dropout=0.0)
    x = np.random.default_rng(0).normal(size=(2, 7, 5, 4)).astype("float32")
    layer(x)
    pooled = keras.ops.mean(x, axis=(1, 2), keepdims=True)
    branch = layer.pooling_norm(layer.pooling_conv(pooled))
    branch = keras.ops.convert_to_numpy(layer.activation_layer(branch))
    assert branch.shape == (2, 1, 1, 3)
    # ... broadcast over the whole map: a change at one corner reaches the
    # far corner, which no 3x3 convolution dilated by 2 sees on a 7x5 map.
    y = x.copy()
    y[:, 0, 0, :] += 10.0
    far = keras.ops.convert_to_numpy(layer(y) - layer(x))[:, -1, -1, :]
    assert np.abs(far).max() > 0


def test_any_spatial_size_in_a_traced_model():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, ASPP(4, dilation_rates=[2])(inputs))
    for size in ((5, 9), (12, 7)):
        output = model.predict(np.ones((1, *size, 3), "float32"), verbose=0)
        assert output.shape == (1, *size, 4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"dilation_rates": []},
            TypeError,
            r"non-empty list of ints.*dilation_rates=\[\]",
        ),
        ({"dilation_rates": 6}, TypeError, r"non-empty list.*dilation_rates=6"),
        ({"dilation_rates": [6, 0]}, ValueError, r"dilation_rates\[1\]=0"),
        ({"dilation_rates": [6, 1.5]}, TypeError, r"dilation_rates\[1\]=1.5"),
        (
            {"separable": True, "spatial_dims": 3},
            ValueError,
            r"no 3-D depthwise convolution.*separable=True, spatial_dims=3",
        ),
        ({"dropout": 1.0}, ValueError, r"dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ASPP(4, **kwargs)
