import re

import keras
import pytest

from seglayers import EncoderBlock
from tests.harness import run_layer_test


@pytest.mark.parametrize(
    "kwargs",
    [{"filters": 4}, {"filters": 4, "pooling": "average", "residual": True}],
    ids=["max", "average-residual"],
)
def test_layer(kwargs):
    run_layer_test(EncoderBlock, kwargs, (2, 8, 8, 3), ((2, 4, 4, 4), (2, 8, 8, 4)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4, "spatial_dims": 3},
        {"filters": 4, "pooling": "average", "residual": True, "spatial_dims": 3},
    ],
    ids=["max", "average-residual"],
)
def test_layer_3d(kwargs):
    run_layer_test(
        EncoderBlock, kwargs, (2, 8, 8, 8, 3), ((2, 4, 4, 4, 4), (2, 8, 8, 8, 4))
    )


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_3d_pooling_halves_every_axis(pooling):
    block = EncoderBlock(4, pooling=pooling, spatial_dims=3)
    pool = {"max": keras.layers.MaxPooling3D, "average": keras.layers.AveragePooling3D}
    # (Subclasses that pool float16 in float32 on TensorFlow; see _spatial.)
    assert isinstance(block.pool, pool[pooling])
    down, skip = block(keras.ops.ones((1, 9, 7, 4, 2)))
    assert tuple(down.shape) == (1, 4, 3, 2, 4)
    assert tuple(skip.shape) == (1, 9, 7, 4, 4)


def test_odd_size_floors():
    down, skip = EncoderBlock(4)(keras.ops.ones((1, 9, 7, 2)))
    assert tuple(down.shape) == (1, 4, 3, 4)
    assert tuple(skip.shape) == (1, 9, 7, 4)


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (1, 1, 5, 5, 2)])
def test_an_axis_of_one_pixel_is_refused(shape):
    # TensorFlow aborted in oneDNN's pooling; JAX pooled it to an empty axis.
    block = EncoderBlock(4, spatial_dims=len(shape) - 2)
    with pytest.raises(
        ValueError,
        match=r"each needs at least 2 pixels.*"
        + re.escape(f"Received: input shape {shape}"),
    ):
        block(keras.ops.ones(shape))


def test_bad_pooling():
    with pytest.raises(
        ValueError,
        match=r"`pooling` must be one of 'max' or 'average'. Received: pooling='min'",
    ):
        EncoderBlock(4, pooling="min")


def test_bad_spatial_dims():
    with pytest.raises(ValueError, match=r"Received: spatial_dims='3'"):
        EncoderBlock(4, spatial_dims="3")


@pytest.mark.parametrize(
    "spatial_dims, shape, match",
    [
        (2, (1, 8, 8, 8, 3), r"`EncoderBlock` expects channels-last images.*"),
        (3, (1, 8, 8, 3), r"`EncoderBlock` expects channels-last volumes.*"),
    ],
)
def test_input_rank_must_match_spatial_dims(spatial_dims, shape, match):
    with pytest.raises(ValueError, match=match + f"spatial_dims={spatial_dims}$"):
        EncoderBlock(4, spatial_dims=spatial_dims)(keras.ops.ones(shape))
