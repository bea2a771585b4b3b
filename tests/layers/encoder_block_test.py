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


def test_odd_size_floors():
    down, skip = EncoderBlock(4)(keras.ops.ones((1, 9, 7, 2)))
    assert tuple(down.shape) == (1, 4, 3, 4)
    assert tuple(skip.shape) == (1, 9, 7, 4)


def test_bad_pooling():
    with pytest.raises(
        ValueError,
        match=r"`pooling` must be one of 'max' or 'average'. Received: pooling='min'",
    ):
        EncoderBlock(4, pooling="min")
