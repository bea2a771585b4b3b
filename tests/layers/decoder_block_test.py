import keras
import numpy as np
import pytest

from seglayers import ConvBlock, DecoderBlock, EncoderBlock, UNet
from seglayers.layers import _spatial, decoder_block
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 4, "spatial_dims": 3},
        {"filters": 4, "upsampling": "bilinear", "attention": True, "spatial_dims": 3},
        {
            "filters": 4,
            "upsampling": "nearest",
            "normalization": "group",
            "spatial_dims": 3,
        },
    ],
    ids=["transpose", "trilinear-attention", "nearest-group"],
)
def test_layer_3d(kwargs):
    run_layer_test(
        DecoderBlock, kwargs, [(2, 4, 4, 4, 8), (2, 8, 8, 8, 4)], (2, 8, 8, 8, 4)
    )


def test_match_spatial_size_is_still_importable_from_here():
    # Models written against 0.1.0 import it from decoder_block.
    assert decoder_block.match_spatial_size is _spatial.match_spatial_size


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear", "nearest"])
def test_3d_upsampling_layers(upsampling):
    block = DecoderBlock(4, upsampling=upsampling, spatial_dims=3)
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 4, 8)).astype("float32")
    up = keras.ops.convert_to_numpy(block.upsample(x))
    assert up.shape[1:4] == (4, 6, 8)
    if upsampling == "transpose":
        assert isinstance(block.upsample, keras.layers.Conv3DTranspose)
    elif upsampling == "nearest":
        np.testing.assert_array_equal(up, x.repeat(2, 1).repeat(2, 2).repeat(2, 3))
    else:  # trilinear, weightless
        assert not block.upsample.weights
        np.testing.assert_allclose(
            up, keras.ops.convert_to_numpy(_spatial.upsample_bilinear_2x(x))
        )


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_reconciles_a_larger_skip(upsampling):
    block = DecoderBlock(4, upsampling=upsampling)
    out = block([keras.ops.ones((1, 7, 6, 8)), keras.ops.ones((1, 15, 13, 4))])
    assert tuple(out.shape) == (1, 15, 13, 4)


@pytest.mark.parametrize(
    "x, skip, sizes",
    [
        ((32, 32), (16, 16), r"\(64, 64\) but the skip is \(16, 16\)"),  # swapped
        ((4, 4), (32, 32), r"\(8, 8\) but the skip is \(32, 32\)"),  # a level short
    ],
)
def test_sizes_a_level_apart_are_refused(x, skip, sizes):
    # Cropped or zero-padded in silence before: 3/4 of the features lost.
    inputs = [keras.ops.ones((1, *x, 4)), keras.ops.ones((1, *skip, 4))]
    match = rf"`x` upsampled is {sizes}.*\(down, skip\)"
    with pytest.raises(ValueError, match=match):
        DecoderBlock(4)(inputs)
    # Also a block built on free sizes (a functional model's), when called.
    block = DecoderBlock(4)
    block([keras.Input((None, None, 4)), keras.Input((None, None, 4))])
    with pytest.raises(ValueError, match=match):
        block(inputs)


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


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_reconciles_3d_sizes_known_only_at_run_time(upsampling):
    volume = keras.Input((None, None, None, 2))
    down, skip = EncoderBlock(4, spatial_dims=3, name="enc")(volume)
    out = DecoderBlock(4, upsampling=upsampling, spatial_dims=3, name="dec")(
        [down, skip]
    )
    model = keras.Model(volume, out)
    predicted = model.predict(np.ones((2, 7, 9, 5, 2)), verbose=0)
    assert predicted.shape == (2, 7, 9, 5, 4)


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_without_a_skip(upsampling):
    run_layer_test(
        DecoderBlock,
        {"filters": 4, "upsampling": upsampling},
        (2, 5, 6, 8),
        (2, 10, 12, 4),
    )


def test_3d_without_a_skip():
    run_layer_test(
        DecoderBlock,
        {"filters": 4, "upsampling": "bilinear", "spatial_dims": 3},
        (2, 3, 4, 5, 8),
        (2, 6, 8, 10, 4),
    )


@pytest.mark.parametrize(
    "spatial_dims, inputs, match",
    [
        (
            2,
            [(1, 4, 4, 4, 8), (1, 8, 8, 8, 4)],
            r"`DecoderBlock` expects channels-last images of shape \(batch, "
            r"height, width, channels\).*pass spatial_dims=3\. Received: "
            r"input_shape=\(1, 8, 8, 8, 4\), spatial_dims=2",
        ),
        (
            3,
            [(1, 4, 4, 8), (1, 8, 8, 4)],
            r"`DecoderBlock` expects channels-last volumes of shape \(batch, "
            r"depth, height, width, channels\).*pass spatial_dims=2\. Received: "
            r"input_shape=\(1, 8, 8, 4\), spatial_dims=3",
        ),
        (3, (1, 4, 4, 8), r"input_shape=\(1, 4, 4, 8\), spatial_dims=3"),
    ],
)
def test_input_rank_must_match_spatial_dims(spatial_dims, inputs, match):
    block = DecoderBlock(4, spatial_dims=spatial_dims)
    if isinstance(inputs, list):
        inputs = [keras.ops.ones(shape) for shape in inputs]
    else:
        inputs = keras.ops.ones(inputs)
    with pytest.raises(ValueError, match=match):
        block(inputs)


def test_a_built_block_checks_the_rank_with_its_input_spec():
    block = DecoderBlock(4, upsampling="nearest")
    block([keras.ops.ones((1, 4, 4, 8)), keras.ops.ones((1, 8, 8, 4))])
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=5"):
        block([keras.ops.ones((1, 4, 4, 4, 8)), keras.ops.ones((1, 8, 8, 8, 4))])


def test_needs_x_or_x_and_a_skip():
    with pytest.raises(ValueError, match=r"expects a list of two inputs `\[x, skip\]`"):
        DecoderBlock(4).build([(1, 4, 4, 4), (1, 8, 8, 4), (1, 8, 8, 4)])


def test_a_skip_of_none_or_of_another_batch_is_named():
    # "'NoneType' object is not iterable", and TensorFlow's "ConcatOp :
    # Dimension 0 in both shapes must be equal".
    x, skip = keras.ops.ones((1, 4, 4, 8)), keras.ops.ones((2, 8, 8, 4))
    with pytest.raises(ValueError, match=r"^`DecoderBlock` got `\[x, None\]`: call"):
        DecoderBlock(4)([x, None])
    with pytest.raises(
        ValueError,
        match=r"needs `x` and the skip of the same batch size; `x` has 1, the "
        r"skip 2\. Received: input_shape=\[\(1, 4, 4, 8\), \(2, 8, 8, 4\)\]$",
    ):
        DecoderBlock(4)([x, skip])


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
        (
            {"spatial_dims": 1},
            r"`spatial_dims` must be 2, for images .*or 3, for volumes .*"
            r"Received: spatial_dims=1",
        ),
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
