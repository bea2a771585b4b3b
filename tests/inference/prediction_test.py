import keras
import numpy as np
import pytest

from seglayers import (
    MaskVisualizer,
    UNet,
    evaluate_segmentation,
    predict_mask,
    predict_tiled,
)
from tests.inference import NOT_ONE_ARRAY


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (height, width, 3)).astype("float32")


def _model(num_classes=3):
    keras.utils.set_random_seed(0)
    return UNet(num_classes, filters=4, depth=2, rescale=1 / 255)


def _wrapped(model, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, model(inputs))


def test_an_image_of_the_model_size_is_predicted_as_it_is():
    model = _model()
    image = _image(32, 32)
    mask = predict_mask(model, image, (32, 32))
    expected = model.predict(image[None], verbose=0)[0].argmax(-1)
    assert mask.dtype == np.int32
    np.testing.assert_array_equal(mask, expected)


def test_a_smaller_image_is_resized_and_its_ids_sampled_back():
    model = _model()
    image = _image(16, 16)
    mask = predict_mask(model, image, 32)
    resized = keras.ops.image.resize(image, (32, 32), antialias=True)
    scores = model.predict(keras.ops.convert_to_numpy(resized)[None], verbose=0)
    # Nearest neighbour at pixel centres: output pixel i reads input 2i + 1.
    np.testing.assert_array_equal(mask, scores[0].argmax(-1)[1::2, 1::2])


def test_a_larger_image_is_tiled_at_its_own_size():
    model = _model()
    image = _image(40, 70)
    mask = predict_mask(model, image, 32, overlap=0.5)
    tiled = predict_tiled(model, image, (32, 32), overlap=0.5, verbose=0)
    np.testing.assert_array_equal(mask, tiled.argmax(-1))


def test_a_strip_thinner_than_the_model_takes_is_tiled_padded():
    model = _model()  # depth 2: at least 4 pixels a side.
    image = _image(70, 3)
    mask = predict_mask(model, image, 32)
    padded = np.pad(image, [(0, 0), (0, 29), (0, 0)])  # zeros at the far edge
    tiled = predict_tiled(model, padded, (32, 32), verbose=0)[:, :3]
    assert mask.shape == (70, 3)
    np.testing.assert_array_equal(mask, tiled.argmax(-1))


def test_a_thin_strip_through_a_model_wrapping_a_unet_is_padded_too():
    # The strip's padding read `depth` from the model itself: a functional
    # model around a UNet has none, so the strip reached the UNet unpadded
    # (a ValueError, or an opaque pooling error on TensorFlow).
    model = _model()
    wrapped = _wrapped(model, (None, None, 3))
    image = _image(70, 3)
    np.testing.assert_array_equal(
        predict_mask(wrapped, image, 32), predict_mask(model, image, 32)
    )


class _Blocks(keras.layers.Layer):
    """A layer whose `depth` counts blocks, as in some backbones."""

    depth = 12

    def call(self, x):
        return keras.ops.concatenate([x, x, x], axis=-1)[..., :3]


def test_depth_is_read_only_from_seglayers_models_inside_a_model():
    # A layer's `depth` of 12 asked for 4096-pixel axes: negative padding.
    inputs = keras.Input((None, None, 3))
    wrapped = keras.Model(inputs, keras.layers.Softmax()(_Blocks()(inputs)))
    assert predict_mask(wrapped, _image(70, 40), 32).shape == (70, 40)


def _two_outputs():
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    heads = {
        name: keras.layers.Conv2D(3, 1, activation="softmax", name=name)(features)
        for name in ("seg", "aux")
    }
    return keras.Model(inputs, heads)


def _render(model, folder):
    images = _image(32, 32)[None]
    data = (images, np.zeros((1, 32, 32), "int32"))
    callback = MaskVisualizer(data, output_dir=folder)
    callback.set_model(model)
    callback.on_train_begin()  # before the first epoch's work
    callback.render()


@pytest.mark.parametrize("container", [list, dict])
def test_one_output_in_a_list_or_dict_is_read_as_one(container, tmp_path):
    inputs = keras.Input((None, None, 3))
    scores = _model()(inputs)
    model = keras.Model(inputs, [scores] if container is list else {"seg": scores})
    masks = np.zeros((1, 32, 32), "int32")
    callback = MaskVisualizer((_image(32, 32)[None], masks), output_dir=tmp_path)
    callback.set_model(model)
    callback.on_train_begin()  # refused `[out]` as "1 output ([0])"
    assert callback.render().dtype == np.uint8
    assert predict_mask(model, _image(40, 40), 32).shape == (40, 40)
    evaluate_segmentation(model, (_image(32, 32)[None], masks), 3)


@pytest.mark.parametrize(
    "who, call",
    [
        ("predict_mask", lambda model, _: predict_mask(model, _image(32, 32), 32)),
        ("predict_tiled", lambda model, _: predict_tiled(model, _image(40, 40), 32)),
        (
            "evaluate_segmentation",
            lambda model, _: evaluate_segmentation(
                model, (_image(32, 32)[None], np.zeros((1, 32, 32), "int32")), 3
            ),
        ),
        ("MaskVisualizer", _render),
    ],
)
def test_a_model_of_several_outputs_is_refused_with_how_to_pick_one(
    who, call, tmp_path
):
    # Each failed with "'dict' object has no attribute 'shape'". (JAX gives
    # the outputs in the order of their names.)
    name = "'(seg|aux)'"
    match = rf"{who} needs a model of one output.*returns 2 \(\[{name}, {name}\]\)"
    with pytest.raises(TypeError, match=match + rf".*model\.output\[{name}\]"):
        call(_two_outputs(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_without_tiling_a_larger_image_is_shrunk():
    model = _model()
    image = _image(40, 70)
    mask = predict_mask(model, image, 32, tiling=False)
    resized = keras.ops.image.resize(image, (32, 32), antialias=True)
    scores = model.predict(keras.ops.convert_to_numpy(resized)[None], verbose=0)
    ids = scores[0].argmax(-1)
    assert mask.shape == (40, 70)
    # Every pixel takes the id of the model-size pixel it falls in.
    rows = ((np.arange(40) + 0.5) * 32 / 40).astype(int)
    cols = ((np.arange(70) + 0.5) * 32 / 70).astype(int)
    np.testing.assert_array_equal(mask, ids[rows[:, None], cols])


def test_uint8_images_and_one_sigmoid_channel():
    model = _model(num_classes=1)
    image = _image(32, 32).astype(np.uint8)
    mask = predict_mask(model, image, 32)
    scores = model.predict(image[None].astype("float32"), verbose=0)
    np.testing.assert_array_equal(mask, (scores[0, ..., 0] > 0.5).astype(int))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"image": np.zeros((1, 32, 32, 3))}, ValueError, "`image` must be one image"),
        ({"image_size": 0}, ValueError, "`image_size` must be the size the model"),
        ({"image_size": (32,)}, ValueError, r"Received: image_size=\(32,\)"),
        ({"tiling": "yes"}, TypeError, "`tiling` must be True or False"),
        ({"overlap": 1.0}, ValueError, r"`overlap` must be in \[0, 1\)"),
        # TensorFlow's resize failed on it; tiled, it gave a (0, 70) mask.
        (
            {"image": np.zeros((0, 70, 3))},
            ValueError,
            r"`image` has an empty axis.*Received: image of shape \(0, 70, 3\)",
        ),
        (
            {"image": np.zeros((0, 10, 3)), "tiling": False},
            ValueError,
            r"`image` has an empty axis",
        ),
        (
            {"image_size": (32, 2)},
            ValueError,
            r"^`image_size` must be at least 4 along every axis for a `UNet` of "
            r"depth=2.*Received: image_size=\(32, 2\)\.",
        ),
        # Before the cast to float32, which dropped the imaginary part.
        ({"image": _image(40, 40) + 1j}, TypeError, r"image of dtype complex64"),
        (  # resized, not tiled: refused all the same
            {"image": np.full((20, 20, 3), np.nan)},
            ValueError,
            r"`image` holds NaN or infinite values \(the first at \(0, 0, 0\)\)",
        ),
        (  # float64 past float32's range: infinite in the cast (resized).
            {"image": np.pad(np.full((1, 1, 3), 1e39), ((2, 17), (3, 16), (0, 0)))},
            ValueError,
            r"^`image` holds values beyond float32's range, about 3\.4e38, which "
            r"the model's cast to float32 makes infinite \(the first, 1e\+39, at "
            r"\(2, 3, 0\)\);.* Scale or clip them",
        ),
        (  # ... and tiled.
            {"image": np.pad(np.full((1, 1, 3), -1e39), ((2, 37), (3, 36), (0, 0)))},
            ValueError,
            r"\(the first, -1e\+39, at \(2, 3, 0\)\)",
        ),
        *NOT_ONE_ARRAY,
        (
            {"model": None},
            TypeError,
            r"^`model` must be a Keras model, such as a `seglayers\.UNet`, for "
            r"`predict_mask`\. Received: model=None of type NoneType$",
        ),
        (
            {"model": "model.keras"},
            TypeError,
            r"for `predict_mask`\. Load it first: `keras\.saving\.load_model\(path\)`"
            r"\. Received: model='model\.keras' of type str$",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {
        "model": UNet(3, filters=4, depth=2),
        "image": _image(32, 32),
        "image_size": 32,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        predict_mask(**kwargs)


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("shape", [(16, 16, 16, 1), (16, 16, 1)])
def test_a_model_of_volumes_is_sent_to_predict_tiled(shape, wrapped):
    # A volume was "not one image"; an image got predict_tiled's message, a
    # function the caller had not called; a wrapped 3-D model failed in Keras.
    model = UNet(2, filters=4, depth=2, spatial_dims=3)
    if wrapped:
        model = _wrapped(model, (None, None, None, 1))
    with pytest.raises(
        ValueError, match=r"this model takes volumes.*seglayers\.predict_tiled"
    ):
        predict_mask(model, np.zeros(shape), 16)


def test_a_keras_model_of_volumes_is_sent_to_predict_tiled_too():
    # Not a seglayers model: its input's rank says it takes volumes.
    model = keras.Sequential(
        [keras.Input((None, None, None, 1)), keras.layers.Conv3D(2, 1)]
    )
    with pytest.raises(ValueError, match=r"this model takes volumes"):
        predict_mask(model, np.zeros((16, 16, 1)), 16)


@pytest.mark.parametrize("tiling", [True, False])
def test_nan_scores_are_no_class(tiling):
    # A model whose weights a diverged training made NaN: -1, as documented,
    # not the arg-max's class 0.
    model = UNet(3, filters=4, depth=2)
    model.build((None, None, None, 3))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    mask = predict_mask(model, _image(40, 36), 32, tiling=tiling)
    assert mask.shape == (40, 36) and (mask == -1).all()


def test_values_beyond_float32_are_refused_even_for_a_float64_model():
    if keras.backend.backend() == "jax":  # float32 there, with a warning
        pytest.skip("a float64 model needs jax_enable_x64 on JAX")
    # predict_mask casts to float32 itself: 1e39 became inf for such a model.
    model = keras.Sequential(
        [
            keras.Input((None, None, 3), dtype="float64"),
            keras.layers.Conv2D(2, 1, dtype="float64"),
        ]
    )
    image = np.ones((8, 8, 3))
    image[1, 2, 0] = 1e39
    with pytest.raises(ValueError, match=r"\(the first, 1e\+39, at \(1, 2, 0\)\)"):
        predict_mask(model, image, 8)
