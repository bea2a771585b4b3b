import keras
import numpy as np
import pytest

from seglayers import ConvBlock, DecoderBlock, EncoderBlock
from seglayers.layers.decoder_block import match_spatial_size
from tests.harness import (
    TORCH_SOFTMAX_SCCE,
    assert_saved_model_predicts_the_same,
    run_layer_test,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4},
        {"filters": 4, "upsampling": "bilinear", "attention": True},
        {
            "filters": 4,
            "upsampling": "nearest",
            "residual": True,
            "normalization": "group",
        },
    ],
    ids=["transpose", "bilinear-attention", "nearest-residual-group"],
)
def test_layer(kwargs):
    run_layer_test(DecoderBlock, kwargs, [(2, 4, 4, 8), (2, 8, 8, 4)], (2, 8, 8, 4))


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_reconciles_a_larger_skip(upsampling):
    block = DecoderBlock(4, upsampling=upsampling)
    out = block([keras.ops.ones((1, 7, 6, 8)), keras.ops.ones((1, 15, 13, 4))])
    assert tuple(out.shape) == (1, 15, 13, 4)


def test_match_spatial_size_pads_and_crops_at_the_far_edge():
    x = np.arange(1, 13, dtype="float32").reshape(1, 3, 4, 1)
    padded = keras.ops.convert_to_numpy(match_spatial_size(x, np.zeros((1, 4, 5, 1))))
    np.testing.assert_array_equal(padded[0, :3, :4, 0], x[0, :, :, 0])
    assert padded[0, 3].sum() == 0 and padded[0, :, 4].sum() == 0
    cropped = keras.ops.convert_to_numpy(match_spatial_size(x, np.zeros((1, 2, 2, 1))))
    np.testing.assert_array_equal(cropped[0, :, :, 0], x[0, :2, :2, 0])
    assert match_spatial_size(x, np.zeros((1, 3, 4, 7))) is x


def test_reconciles_sizes_known_only_at_run_time():
    # A functional model with unknown height and width: sizes are dynamic in
    # the TensorFlow graph `predict` traces.
    image = keras.Input((None, None, 2))
    down, skip = EncoderBlock(4, name="enc")(image)
    out = DecoderBlock(4, name="dec")([down, skip])
    model = keras.Model(image, out)
    assert tuple(model.predict(np.ones((2, 11, 9, 2)), verbose=0).shape) == (
        2,
        11,
        9,
        4,
    )


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_without_a_skip(upsampling):
    run_layer_test(
        DecoderBlock,
        {"filters": 4, "upsampling": upsampling},
        (2, 5, 6, 8),
        (2, 10, 12, 4),
    )


def test_needs_x_or_x_and_a_skip():
    with pytest.raises(ValueError, match=r"expects a list of two inputs `\[x, skip\]`"):
        DecoderBlock(4).build([(1, 4, 4, 4), (1, 8, 8, 4), (1, 8, 8, 4)])


def test_attention_needs_a_skip():
    with pytest.raises(ValueError, match=r"gates a skip, so it needs inputs"):
        DecoderBlock(4, attention=True).build((1, 8, 8, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"upsampling": "bicubic"},
            r"`upsampling` must be one of 'transpose', 'bilinear' or "
            r"'nearest'. Received: upsampling='bicubic'",
        ),
        ({"attention": 1}, r"`attention` must be True or False. Received: attention=1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DecoderBlock(4, **kwargs)


@TORCH_SOFTMAX_SCCE
def test_blocks_compose_a_custom_network(tmp_path):
    """The documented composition: a two-level U-Net with a residual middle."""
    inputs = keras.Input((None, None, 3))
    x, skip_1 = EncoderBlock(8, name="enc_1")(inputs)
    x, skip_2 = EncoderBlock(16, name="enc_2")(x)
    x = ConvBlock(32, residual=True, name="middle")(x)
    x = DecoderBlock(16, attention=True, name="dec_2")([x, skip_2])
    x = DecoderBlock(8, upsampling="bilinear", name="dec_1")([x, skip_1])
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)

    images = np.random.default_rng(0).uniform(size=(4, 20, 20, 3)).astype("float32")
    masks = np.random.default_rng(1).integers(0, 3, size=(4, 20, 20, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(images, masks, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(images, verbose=0).shape == (4, 20, 20, 3)
    assert_saved_model_predicts_the_same(model, images, tmp_dir=tmp_path)
