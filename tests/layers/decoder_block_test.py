import keras
import numpy as np
import pytest

from seglayers import ConvBlock, DecoderBlock, EncoderBlock, UNet
from seglayers.layers.decoder_block import match_spatial_size, upsample_bilinear_2x
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


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8), (7, 4)])
def test_bilinear_upsampling_is_keras_resize(size):
    # The same numbers as `ops.image.resize` (and so as the `UpSampling2D`
    # that seglayers used before), so saved models predict as they did.
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    expected = keras.ops.image.resize(
        x, (2 * size[0], 2 * size[1]), interpolation="bilinear"
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upsample_bilinear_2x(x)),
        keras.ops.convert_to_numpy(expected),
        atol=1e-6,
    )


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear", "nearest"])
def test_every_upsampling_predicts_at_new_sizes_in_one_process(upsampling):
    # On TensorFlow, `predict` retraces with unknown height and width the
    # second time it sees a new size: the case plain bilinear fails.
    model = UNet(3, filters=4, depth=2, upsampling=upsampling)
    rng = np.random.default_rng(0)
    for size in [(32, 32), (40, 40), (37, 45)]:
        images = rng.uniform(size=(2, *size, 3)).astype("float32")
        predicted = model.predict(images, verbose=0)
        assert predicted.shape == (2, *size, 3)
        np.testing.assert_allclose(
            predicted, keras.ops.convert_to_numpy(model(images)), atol=1e-5
        )


def _graph_bool_error():
    if keras.backend.backend() != "tensorflow":
        return Exception
    import tensorflow as tf

    return tf.errors.OperatorNotAllowedInGraphError


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="a TensorFlow graph bug"
)
@pytest.mark.xfail(strict=True, raises=_graph_bool_error())
def test_plain_keras_bilinear_upsampling_fails_at_a_second_size():
    # Why DecoderBlock upsamples with `upsample_bilinear_2x`: Keras 3.15.1's
    # `ops.image.resize` checks `size[0] <= 0` as a Python bool, which a size
    # known only at run time cannot give. When this passes, the workaround
    # can go.
    image = keras.Input((None, None, 3))
    model = keras.Model(
        image, keras.layers.UpSampling2D(2, interpolation="bilinear")(image)
    )
    for size in [(8, 8), (10, 10)]:
        model.predict(np.ones((1, *size, 3), "float32"), verbose=0)
