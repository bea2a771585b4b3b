import pathlib

import keras
import numpy as np
import pytest

from seglayers import UNet, predict_mask, predict_tiled
from seglayers.inference import _checks as checks
from seglayers.inference.predict_tiled import _starts, _window
from tests.inference import NOT_ONE_ARRAY


def _image(height, width, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(height, width, channels)).astype("float32")


def _pointwise_model(channels=3):
    return keras.Sequential(
        [keras.Input((None, None, channels)), keras.layers.Conv2D(2, 1)]
    )


@pytest.mark.parametrize(
    "size, tile, overlap",
    [((50, 70), 32, 0.25), ((33, 17), (16, 8), 0.5), ((20, 12), 64, 0.25)],
    ids=["odd", "rectangular-tiles", "image-smaller-than-a-tile"],
)
def test_a_pointwise_model_gives_the_whole_image_prediction(size, tile, overlap):
    model = _pointwise_model()
    image = _image(*size)
    whole = model.predict(image[None], verbose=0)[0]
    tiled = predict_tiled(model, image, tile, overlap=overlap, batch_size=3, verbose=0)
    assert tiled.shape == size + (2,) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_blended_scores_stay_within_the_tiles_range():
    # A sure sigmoid's 1.0 was blended into 1.0000001, which `predict_mask`
    # then refused as a logit ("end the model with a sigmoid").
    inputs = keras.Input((None, None, 3))
    sure = keras.layers.Conv2D(
        1, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(20.0)
    )
    model = keras.Model(inputs, sure(inputs))
    tiled = predict_tiled(model, _image(50, 70), 32, verbose=0)
    assert tiled.max() == 1.0
    assert (predict_mask(model, _image(50, 70), 32) == 1).all()


def test_a_nan_pixel_stays_one_pixel():
    # Python's min(inf, nan) is inf: every other pixel was clipped to -inf.
    # A NaN image is refused (below), so here the model makes the NaN: the
    # log of the one negative pixel.
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Activation(keras.ops.log),
            keras.layers.Conv2D(2, 1),
        ]
    )
    image = _image(48, 48)
    image[5, 5, 0] = -1
    tiled = predict_tiled(model, image, 32, batch_size=1, verbose=0)
    whole = model.predict(image[None], verbose=0)[0]
    assert np.isnan(tiled).any(axis=-1).sum() == 1
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_bfloat16_outputs_are_blended_as_scores():
    # numpy does not count bfloat16 as floating: it was taken for class ids.
    model = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1, dtype="bfloat16")]
    )
    tiled = predict_tiled(model, _image(50, 70), 32, verbose=0)
    assert tiled.dtype == np.float32


def test_class_ids_are_not_blended():
    # A model that outputs ids got their weighted average (1.4: no class).
    inputs = keras.Input((None, None, 3))
    ids = keras.ops.argmax(keras.layers.Conv2D(3, 1)(inputs), axis=-1)[..., None]
    model = keras.Model(inputs, ids)
    image = _image(50, 70)
    whole = keras.ops.convert_to_numpy(model.predict_on_batch(image[None]))[0]
    for blend in ("gaussian", "constant"):
        tiled = predict_tiled(model, image, 32, blend=blend, verbose=0)
        assert tiled.dtype == whole.dtype
        np.testing.assert_array_equal(tiled, whole)
    np.testing.assert_array_equal(predict_mask(model, image, 32), whole[..., 0])


def test_a_model_of_one_size_takes_a_smaller_image_padded():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    image = _image(10, 12)
    padded = np.pad(image, [(0, 6), (0, 4), (0, 0)])  # zeros at the far edges
    whole = model.predict(padded[None], verbose=0)[0, :10, :12]
    tiled = predict_tiled(model, image, 16, verbose=0)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_a_unet_over_an_encoder_of_one_size_takes_a_thinner_image():
    # Before, the tile shrank to the image's 20 rows, which the encoder,
    # built for 32x32, refused.
    inputs = keras.Input((32, 32, 3))
    x = inputs
    features = []
    for _ in range(3):
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)
        features.append(x)
    fixed = keras.Model(inputs, features)
    model = UNet(2, encoder=fixed, depth=3, encoder_preprocessing=None)
    image = _image(20, 70)
    tiled = predict_tiled(model, image, 32, verbose=0)
    padded = np.pad(image, [(0, 12), (0, 0), (0, 0)])
    expected = predict_tiled(model, padded, 32, verbose=0)[:20]
    np.testing.assert_allclose(tiled, expected, atol=1e-6)


def test_a_unet_in_tiles_matches_the_whole_image():
    keras.utils.set_random_seed(0)
    model = UNet(3, filters=4, depth=2)
    image = _image(96, 80)
    whole = model.predict(image[None], verbose=0)[0]
    errors = {}
    for blend in ("gaussian", "constant"):
        tiled = predict_tiled(model, image, 64, overlap=0.5, blend=blend, verbose=0)
        np.testing.assert_allclose(tiled.sum(-1), 1, atol=1e-5)  # still softmax
        errors[blend] = np.abs(tiled - whole).mean()
    # Tile edges see zero padding where the whole image has context; the
    # Gaussian window trusts tile centres, so its blend is the closer one.
    assert errors["gaussian"] < 0.002
    assert errors["gaussian"] < errors["constant"]


def _pointwise_volume_model(channels=2):
    return keras.Sequential(
        [keras.Input((None, None, None, channels)), keras.layers.Conv3D(3, 1)]
    )


@pytest.mark.parametrize(
    "size, tile", [((13, 20, 9), 8), ((10, 12, 14), (4, 12, 6)), ((5, 6, 7), 16)]
)
def test_a_pointwise_model_gives_the_whole_volume_prediction(size, tile):
    model = _pointwise_volume_model()
    volume = np.random.default_rng(0).uniform(size=size + (2,)).astype("float32")
    whole = model.predict(volume[None], verbose=0)[0]
    tiled = predict_tiled(model, volume, tile, overlap=0.5, batch_size=3, verbose=0)
    assert tiled.shape == size + (3,) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_a_3d_unet_in_tiles_matches_the_whole_volume():
    keras.utils.set_random_seed(0)
    # Batch normalization (moving statistics at inference): the default in
    # 3-D, group normalization, normalizes each tile by its own statistics,
    # so only tiles of the training patch size match what it learned.
    model = UNet(3, filters=4, depth=2, spatial_dims=3, normalization="batch")
    volume = np.random.default_rng(0).uniform(size=(24, 24, 24, 1)).astype("float32")
    whole = model.predict(volume[None], verbose=0)[0]
    errors = {}
    for blend in ("gaussian", "constant"):
        tiled = predict_tiled(model, volume, 16, overlap=0.5, blend=blend, verbose=0)
        np.testing.assert_allclose(tiled.sum(-1), 1, atol=1e-5)  # still softmax
        errors[blend] = np.abs(tiled - whole).mean()
    # 16³ tiles are smaller than this U-Net's receptive field (about 40), so
    # zero padding reaches every tile's centre: the error is about a third
    # of the outputs' spread around their mean (0.05); 0.002 with 32-voxel
    # tiles. The Gaussian window still makes it the closer blend.
    assert errors["gaussian"] < 0.02
    assert errors["gaussian"] < errors["constant"]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_an_axis_below_the_models_smallest_input_is_padded(spatial_dims):
    # A scan of 3 slices for a U-Net that halves its input twice (at least
    # 4): the tile shrank to 3 and the model refused it, naming the tiles.
    keras.utils.set_random_seed(0)
    model = UNet(3, filters=4, depth=2, spatial_dims=spatial_dims)
    size = (10, 3, 9)[3 - spatial_dims :]
    channels = 1 if spatial_dims == 3 else 3
    image = np.random.default_rng(0).uniform(size=size + (channels,))
    tiled = predict_tiled(model, image.astype("float32"), 8, verbose=0)
    assert tiled.shape == size + (3,)
    padding = [(0, 0)] * (spatial_dims + 1)
    padding[spatial_dims - 2] = (0, 5)  # the 3 rows or slices to the tile's 8
    padded = np.pad(image, padding).astype("float32")
    expected = predict_tiled(model, padded, 8, verbose=0)
    np.testing.assert_allclose(tiled, expected[tuple(slice(0, s) for s in size)])


@pytest.mark.parametrize(
    "image, error, match",
    [
        (
            np.full((8, 8, 3), 1 + 1j),
            TypeError,
            r"`image` must hold numbers \(integers or floats\), as the model's "
            r"inputs do\. Received: image of dtype complex128\. Convert it",
        ),
        (np.full((8, 8, 3), "a"), TypeError, r"Received: image of dtype <U1"),
        (
            np.where(np.arange(8)[:, None, None] == 5, np.nan, np.zeros((8, 8, 3))),
            ValueError,
            r"^`image` holds NaN or infinite values \(the first at \(5, 0, 0\)\); "
            r"each would spread.*numpy\.nan_to_num.*Received: image of shape "
            r"\(8, 8, 3\)$",
        ),
        (np.full((8, 8, 3), -np.inf, "float16"), ValueError, r"NaN or infinite"),
        (  # finite in float64, infinite in the model's float32
            np.where(np.arange(8)[:, None, None] == 6, 4e38, np.zeros((8, 8, 3))),
            ValueError,
            r"^`image` holds values beyond float32's range, about 3\.4e38, which "
            r"the model's cast to float32 makes infinite \(the first, 4e\+38, at "
            r"\(6, 0, 0\)\); each would spread.* Scale or clip them \(numpy\.clip\)"
            r" before predicting\. Received: image of shape \(8, 8, 3\)$",
        ),
    ],
    ids=["complex", "strings", "nan", "infinite", "beyond-float32"],
)
@pytest.mark.parametrize("checked", [None, 24], ids=["at-once", "row-by-row"])
def test_an_image_of_no_numbers_or_not_finite_is_refused(
    image, error, match, checked, monkeypatch
):
    if checked is not None:  # an 8x3 row at a time: positions count from it
        monkeypatch.setattr(checks, "_CHECKED_VALUES", checked)
    with pytest.raises(error, match=match):
        predict_tiled(_pointwise_model(), image, 4, verbose=0)


def test_a_float64_model_takes_values_beyond_float32s_range():
    if keras.backend.backend() == "jax":  # float32 there, with a warning
        pytest.skip("a float64 model needs jax_enable_x64 on JAX")
    small = keras.initializers.Constant(1e-3)
    model = keras.Sequential(
        [
            keras.Input((None, None, 3), dtype="float64"),
            keras.layers.Conv2D(2, 1, kernel_initializer=small, dtype="float64"),
        ]
    )
    image = np.ones((8, 8, 3))
    image[2, 3, 1] = 1e39  # 1e36 out: within float32's range
    tiled = predict_tiled(model, image, 4, blend="constant", verbose=0)
    whole = model.predict_on_batch(image[None])[0]
    np.testing.assert_allclose(tiled, whole, rtol=1e-6)
    assert tiled[2, 3, 0] > 1e35


def test_a_tile_below_the_models_smallest_input_is_refused():
    model = UNet(3, filters=4, depth=2, spatial_dims=3)
    with pytest.raises(
        ValueError,
        match=r"^`tile_size` must be at least 4 along every axis for a `UNet` of "
        r"depth=2, which halves its input 2 times\. Received: tile_size=\(12, 12, "
        r"2\)\. Use at least 4, best the size the model trained on\.$",
    ):
        predict_tiled(model, np.zeros((12, 12, 12, 1), "float32"), (12, 12, 2))
    inputs = keras.Input((None, None, 3))  # a UNet inside a model: its depth
    wrapped = keras.Model(inputs, UNet(3, filters=4, depth=3)(inputs))
    with pytest.raises(ValueError, match=r"for a `UNet` of depth=3.*tile_size=6"):
        predict_tiled(wrapped, _image(16, 16), 6)


def test_an_image_of_other_channels_than_the_models_is_refused():
    fixed = keras.Input((8, 8, 8, 1))  # a model of one size: "unknown" before
    models = [
        keras.Model(fixed, UNet(2, filters=4, depth=2, spatial_dims=3)(fixed)),
        UNet(2, filters=4, depth=2, spatial_dims=3),
    ]
    models[1].build((None, None, None, None, 1))
    for model in models:
        with pytest.raises(
            ValueError,
            match=r"^`image` has 2 channels, and the model takes 1: convert the "
            r"image, or use a model built for 2\. Received: image of shape "
            r"\(12, 12, 12, 2\)$",
        ):
            predict_tiled(model, np.zeros((12, 12, 12, 2), "float32"), 8)
    with pytest.raises(ValueError, match=r"`image` has 2 channels, and the model"):
        predict_tiled(_pointwise_model(), np.zeros((8, 8, 2), "float32"), 8)


def test_a_wrapper_that_changes_the_channels_is_read_by_its_own_input():
    # A 1x1 convolution to 3 channels before a UNet built for 3: the image
    # has the wrapper's 1, not the UNet's 3.
    inputs = keras.Input((None, None, 1))
    unet = UNet(2, filters=4, depth=2)
    model = keras.Model(inputs, unet(keras.layers.Conv2D(3, 1)(inputs)))
    assert predict_tiled(model, np.zeros((12, 12, 1)), 8, verbose=0).shape == (
        12,
        12,
        2,
    )


class _Deep(keras.Model):
    """A model whose `depth` counts something else (here 50 blocks)."""

    def __init__(self):
        super().__init__(name="deep")
        self.depth = 50
        self.conv = keras.layers.Conv2D(2, 1)

    def call(self, inputs):
        return self.conv(inputs)


def test_only_a_seglayers_models_depth_sets_the_smallest_tile():
    tiled = predict_tiled(_Deep(), _image(12, 20), 8, verbose=0)
    assert tiled.shape == (12, 20, 2)


def test_a_batch_of_one_image_for_a_model_that_does_not_say_its_rank():
    # Read as a volume, as its rank says: the model's Conv2D failed deep
    # inside ("'NDHWC' not in: 'NHWC', 'NCHW'"), naming neither the image
    # nor the fix.
    with pytest.raises(
        ValueError,
        match=r"^`predict_tiled` read `image` as a volume \(depth, height, width, "
        r"channels\), as its rank says, .* failed on tiles of shape \(1, 8, 8, "
        r"3\)\. For one image, drop the batch axis \(`image\[0\]`\)\. The "
        r"model's error: ",
    ):
        predict_tiled(_Deep(), _image(12, 20)[None], 8, verbose=0)


def test_tiles_cover_the_image_and_end_at_its_edge():
    assert _starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert _starts(32, 32, 0.5) == [0]
    assert _starts(33, 32, 0.0) == [0, 1]
    window = np.outer(_window(16, "gaussian"), _window(16, "gaussian"))
    assert window.max() == 1 and window.min() > 0
    assert window[8, 8] > window[0, 8] > window[0, 0]


@pytest.mark.parametrize(
    "size, batches", [((24, 16), [2]), ((28, 16), [4]), ((44, 16), [8])]
)
def test_no_batch_is_much_larger_than_the_tiles(size, batches):
    # Two tiles in batches of 8 ran 6 zero tiles through the model too. The
    # batch is the tiles' count rounded up to a power of two (2; 4 for 3
    # tiles; 8 for 5), at most `batch_size`: few batch shapes to compile.
    model, sizes = _pointwise_model(), []
    predict = model.predict_on_batch
    model.predict_on_batch = lambda tiles: sizes.append(len(tiles)) or predict(tiles)
    image = _image(*size)
    tiled = predict_tiled(model, image, 16, overlap=0.5, batch_size=8, verbose=0)
    assert sizes == batches
    whole = model.predict(image[None], verbose=0)[0]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_shows_progress(capsys):
    predict_tiled(_pointwise_model(), _image(40, 40), 16, batch_size=2, verbose=1)
    assert "batch" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"image": np.zeros((1, 8, 8, 3))},
            ValueError,
            r"`image` must be one image `\(height, width, channels\)`.*"
            r"Received: image of shape \(1, 8, 8, 3\)",
        ),
        ({"tile_size": 0}, ValueError, r"`tile_size` must be a positive int.*=0"),
        ({"tile_size": (8,)}, ValueError, r"Received: tile_size=\(8,\)"),
        (
            {"image": np.zeros((8, 8, 8, 8, 2)), "model": _pointwise_volume_model()},
            ValueError,
            r"`image` must be one volume `\(depth, height, width, channels\)`.*"
            r"Received: image of shape \(8, 8, 8, 8, 2\)",
        ),
        (
            {
                "image": np.zeros((8, 8, 8, 2)),
                "model": _pointwise_volume_model(),
                "tile_size": (4, 4),
            },
            ValueError,
            r"`tile_size` must be a positive int or a tuple \(depth, height, "
            r"width\).*Received: tile_size=\(4, 4\)",
        ),
        ({"overlap": 1.0}, ValueError, r"`overlap` must be in \[0, 1\).*overlap=1.0"),
        ({"overlap": "half"}, TypeError, r"`overlap` must be a float"),
        ({"batch_size": 0}, ValueError, r"batch_size=0"),
        ({"blend": "linear"}, ValueError, r"`blend` must be one of 'gaussian' or"),
        (
            {"image": np.zeros((8, 0, 3))},
            ValueError,
            r"^`image` has an empty axis: there is nothing to predict\. "
            r"Received: image of shape \(8, 0, 3\)$",
        ),
        *NOT_ONE_ARRAY,
        (  # an AttributeError on `predict_on_batch`, after the tiling
            {"model": None},
            TypeError,
            r"^`model` must be a Keras model, such as a `seglayers\.UNet`, for "
            r"`predict_tiled`\. Received: model=None of type NoneType$",
        ),
        (
            {"model": pathlib.Path("m.keras")},
            TypeError,
            r"for `predict_tiled`\. Load it first: .*Received: model=.*m\.keras",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {
        "model": _pointwise_model(),
        "image": np.zeros((8, 8, 3)),
        "tile_size": 4,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        predict_tiled(**arguments)


def test_a_model_that_changes_the_size_is_refused():
    model = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3, padding="valid")]
    )
    with pytest.raises(
        ValueError,
        match=r"output has its input's height and width.*wrap one that does not",
    ):
        predict_tiled(model, _image(16, 16), 8, verbose=0)


def test_a_model_that_changes_the_depth_is_refused():
    model = keras.Sequential(
        [keras.Input((None, None, None, 1)), keras.layers.Conv3D(2, 3, padding="valid")]
    )
    with pytest.raises(
        ValueError, match=r"output has its input's depth, height.*predict whole volumes"
    ):
        predict_tiled(model, np.zeros((8, 8, 8, 1), "float32"), 8, verbose=0)
