import json
import re

import keras
import numpy as np
import pytest

from seglayers import FPN, DiceCrossEntropyLoss, UNet, UNetPlusPlus
from seglayers.models import encoders
from tests.harness import assert_saved_model_predicts_the_same

APPLICATIONS = [
    "resnet50",
    "resnet50v2",
    "efficientnetv2b0",
    "mobilenetv3small",
    "mobilenetv3large",
    "convnexttiny",
]
TRAINED = "mobilenetv3small"


def _images(n=2, size=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, *size, 3)).astype("float32")


def _masks(n=2, size=(64, 64), num_classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_classes, size=(n, *size, 1)).astype("int32")


# keras.applications models are large: on TensorFlow, running them eagerly
# skips minutes of tracing.
ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def _predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def _train_one_step(model, images, masks):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=DiceCrossEntropyLoss(),
        run_eagerly=ON_TENSORFLOW,
    )
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    logs = model.train_on_batch(images, masks, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    return before, after


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_encoder(name, tmp_path):
    if not ON_TENSORFLOW:
        pytest.skip(
            "each keras.applications model compiles for a minute or more on a "
            "JAX CPU; they all run on TensorFlow, and the small encoders below "
            "cover the same code here"
        )
    model = UNet(3, encoder=name, filters=4)
    images, masks = _images(), _masks()
    assert _predict(model, images).shape == (2, 64, 64, 3)
    if name == TRAINED:
        # One encoder's step stands for all: the training step is Keras's
        # whatever the encoder (ConvNeXtTiny's alone took 13 s eagerly).
        before, after = _train_one_step(model, images, masks)
        assert any(not np.array_equal(b, a) for b, a in zip(before, after))
    expected = _predict(model, images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(_predict(loaded, images), expected, atol=1e-6)
    assert isinstance(loaded.encoder, keras.Model)
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())


def _as_json(config):
    return json.loads(json.dumps(config))  # tuples and lists alike


def _small_cnn(
    channels=3, strides=5, name="small_cnn", input_size=(None, None), padding="same"
):
    """A functional CNN with features at strides 2 .. 2**strides, for inputs
    of `input_size` (any size by default)."""
    inputs = keras.Input((*input_size, channels))
    x = inputs
    # A 2x2 kernel without padding floors sizes; 3x3 with padding rounds up.
    kernel_size = 3 if padding == "same" else 2
    for level in range(strides):
        x = keras.layers.Conv2D(4, kernel_size, strides=2, padding=padding)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=f"stride_{2 ** (level + 1)}")(x)
    return keras.Model(inputs, x, name=name)


def test_the_pyramid_takes_the_last_layer_at_each_stride():
    pyramid, strides = encoders.feature_pyramid(_small_cnn(), depth=5)
    assert strides == [2, 4, 8, 16, 32]
    names = [t._keras_history.operation.name for t in pyramid.outputs]
    assert names == ["stride_2", "stride_4", "stride_8", "stride_16", "stride_32"]
    # A model that already returns its pyramid is used as it is.
    assert encoders.feature_pyramid(pyramid, depth=5) == (pyramid, strides)
    shallower, strides = encoders.feature_pyramid(_small_cnn(), depth=3)
    assert strides == [2, 4, 8] and len(shallower.outputs) == 3


def test_a_model_as_encoder_gives_the_input_size(tmp_path):
    size = (70, 45)  # not a multiple of 32: the encoder rounds sizes up
    model = UNet(3, encoder=_small_cnn(), filters=4, attention=True)
    images = _images(size=size)
    expected = _predict(model, images)
    assert expected.shape == (2, *size, 3)
    # The stride-1 level has no skip, so no attention gate either.
    assert model.decoder_blocks[-1].attention_gate is None
    assert model.decoder_blocks[0].attention_gate is not None
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(_predict(loaded, images), expected, atol=1e-6)


def _pyramid_names(pyramid):
    return [t._keras_history.operation.name for t in pyramid.outputs]


STRIDE_NAMES = ["stride_2", "stride_4", "stride_8", "stride_16", "stride_32"]


@pytest.mark.parametrize(
    "size, padding",
    [
        ((64, 64), "same"),
        ((224, 224), "same"),  # 7 at stride 32, as in ResNet50 at 224
        ((70, 45), "same"),  # 70 / 32 and 45 / 32 rounded up: 3 and 2
        ((65, 97), "valid"),  # rounded down: 2 and 3
    ],
)
def test_an_encoder_built_for_one_size_is_probed_at_that_size(size, padding):
    encoder = _small_cnn(input_size=size, padding=padding)
    pyramid, strides = encoders.feature_pyramid(encoder, depth=5)
    assert strides == [2, 4, 8, 16, 32]
    assert _pyramid_names(pyramid) == STRIDE_NAMES
    model = UNet(3, encoder=encoder, filters=4)
    assert _predict(model, _images(n=1, size=size)).shape == (1, *size, 3)


def test_padding_deep_in_a_fixed_size_encoder_is_not_a_shallower_stride():
    # ResNet50V2 at 64x64: its last stage pads the 2x2 stride-32 features to
    # 4x4, the size of the stride-16 features; those stay the skip.
    encoder = _small_cnn(input_size=(64, 64))
    x = keras.layers.ZeroPadding2D(1)(encoder.output)
    x = keras.layers.Conv2D(4, 3, name="after_padding")(x)
    pyramid, strides = encoders.feature_pyramid(keras.Model(encoder.inputs, x), depth=5)
    assert strides == [2, 4, 8, 16, 32]
    assert _pyramid_names(pyramid) == STRIDE_NAMES[:-1] + ["after_padding"]


@pytest.mark.parametrize("shapes", [[(None, None, 3)] * 2, [(None, 3)]])
def test_an_encoder_must_take_one_image_input(shapes):
    inputs = [keras.Input(shape) for shape in shapes]
    outputs = keras.layers.Dense(4)(inputs[0])
    with pytest.raises(
        ValueError,
        match=r"`encoder` must take one image input \(batch, height, width, "
        r"channels\): pass a model of one such input.*Received: an encoder with",
    ):
        UNet(3, encoder=keras.Model(inputs, outputs), filters=4)


def test_a_fixed_size_encoder_rejects_other_sizes_by_name(tmp_path):
    model = UNet(3, encoder=_small_cnn(input_size=(70, 45)), filters=4)
    images = _images(size=(70, 45))
    loaded = assert_saved_model_predicts_the_same(model, images, tmp_path)
    # A new model, and one that has run: both name the size, before Keras's
    # input-spec error would name an internal model.
    fresh = UNet(3, encoder=_small_cnn(input_size=(70, 45)), filters=4)
    for m in (fresh, model, loaded):
        with pytest.raises(
            ValueError,
            match=r"encoder was built for images of \(height, width\) \(70, 45\), "
            r"its `input_shape`, and takes no other size\. Received: input shape "
            r"\(1, 64, 64, 3\)\. Resize the images to \(70, 45\)",
        ):
            m(_images(n=1))
    with pytest.raises(ValueError, match=r"\(height, width\) \(70, 45\)"):
        fresh.predict(_images(n=1, size=(45, 70)), verbose=0)


def test_an_encoder_with_a_fixed_height_takes_any_width():
    model = UNet(3, encoder=_small_cnn(input_size=(64, None)), filters=4)
    for width in (40, 72):
        assert _predict(model, _images(n=1, size=(64, width))).shape[1:3] == (
            64,
            width,
        )
    with pytest.raises(ValueError, match=r"\(height, width\) \(64, any\)"):
        model(_images(n=1, size=(32, 40)))


def test_resnet50_built_for_224_gives_its_pyramid():
    if not ON_TENSORFLOW:
        pytest.skip(
            "keras.applications models take most of a minute to build and "
            "compile on a JAX CPU; the small fixed-size encoders above cover "
            "the same code there"
        )
    # The usual way to build them, which failed with Keras's input-spec
    # error from a 256x256 probe.
    resnet = keras.applications.ResNet50(
        input_shape=(224, 224, 3), include_top=False, weights=None
    )
    model = UNet(2, encoder=resnet, filters=4)
    assert [tuple(t.shape[1:3]) for t in model.encoder.outputs] == [
        (112, 112),
        (56, 56),
        (28, 28),
        (14, 14),
        (7, 7),
    ]
    assert model.compute_output_shape((None, 224, 224, 3)) == (None, 224, 224, 2)


@pytest.mark.slow
def test_mobilenet_built_for_one_size_predicts_saves_and_loads(tmp_path):
    if not ON_TENSORFLOW:
        pytest.skip("builds and compiles for about a minute on a JAX CPU")
    mobilenet = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), include_top=False, weights=None
    )
    model = UNet(3, encoder=mobilenet, filters=4)
    images = _images()
    assert _predict(model, images).shape == (2, 64, 64, 3)
    assert_saved_model_predicts_the_same(model, images, tmp_path)


def test_config_round_trip_keeps_the_encoder():
    model = UNet(3, encoder=_small_cnn(), filters=4, dropout=0.1)
    config = model.get_config()
    json.dumps(config)
    assert config["encoder"]["class_name"] == "Functional"
    revived = UNet.from_config(config)
    assert revived.get_config() == config
    for m in (model, revived):
        m.build((None, None, None, 3))
    assert revived.count_params() == model.count_params()


def test_frozen_encoder_keeps_weights_and_batch_statistics():
    encoder = _small_cnn()
    model = UNet(3, encoder=encoder, filters=4, encoder_trainable=False)
    encoder_weights = [keras.ops.convert_to_numpy(w) for w in encoder.weights]
    _, _ = _train_one_step(model, _images(), _masks())
    # Kernels and the moving mean/variance of BatchNormalization alike.
    for before, after in zip(encoder_weights, encoder.weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert not model.encoder.trainable
    assert model.trainable_weights  # the decoder still trains
    assert not any(w is e for w in model.trainable_weights for e in encoder.weights)


def test_an_unfrozen_encoder_stays_unfrozen_in_a_saved_file(tmp_path):
    # Keras's fine-tuning recipe: frozen encoder, then unfrozen and compiled
    # again. The file reloaded it frozen (encoder_trainable re-applied), and
    # Keras dropped the optimizer state for the variables it no longer had.
    model = UNet(3, encoder=_small_cnn(), filters=4, encoder_trainable=False)
    _train_one_step(model, _images(), _masks())
    model.encoder.trainable = True
    _train_one_step(model, _images(), _masks())
    moving_mean = model.encoder.layers[2].moving_mean
    before = keras.ops.convert_to_numpy(moving_mean)
    _train_one_step(model, _images(), _masks())
    # Still in inference mode, as the Keras guide advises: no new statistics.
    np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(moving_mean))
    path = tmp_path / "unfrozen.keras"
    model.save(path)
    revived = keras.saving.load_model(path)
    assert revived.encoder.trainable
    assert revived.get_config()["encoder_trainable"] is False
    assert len(revived.trainable_weights) == len(model.trainable_weights)
    assert len(revived.optimizer.variables) == len(model.optimizer.variables)
    images = _images()
    np.testing.assert_allclose(
        _predict(revived, images), _predict(model, images), rtol=1e-5, atol=1e-6
    )


def test_encoder_without_stride_2_features():
    # Like ConvNeXt and keras-hub's ResNet: a stride-4 stem.
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 4, strides=4)(inputs)
    for _ in range(3):
        x = keras.layers.Conv2D(4, 2, strides=2)(x)
    model = UNet(2, encoder=keras.Model(inputs, x), filters=4)
    assert model.encoder_levels == ("P2", "P3", "P4", "P5")
    assert tuple(model(_images()).shape) == (2, 64, 64, 2)


def test_keras_hub_backbone_pyramid_outputs(tmp_path):
    if not ON_TENSORFLOW:
        pytest.skip("compiles for most of a minute on a JAX CPU; runs on TensorFlow")
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    assert sorted(backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    model = UNet(3, encoder=backbone, filters=4)
    assert model.encoder_levels == ("P2", "P3", "P4", "P5")
    images, masks = _images(), _masks()
    assert model.predict(images, verbose=0).shape == (2, 64, 64, 3)
    _train_one_step(model, images, masks)
    expected = _predict(model, images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(_predict(loaded, images), expected, atol=1e-6)


@pytest.mark.parametrize("model_class", [UNet, UNetPlusPlus])
def test_an_encoder_of_one_level(model_class):
    # A one-output functional model returns a bare tensor, whose batch axis
    # the levels were once zipped over ("expected ndim=4, found ndim=3").
    model = model_class(2, encoder=_small_cnn(strides=1), depth=1, filters=4)
    assert model.encoder_levels == ("P1",)
    assert tuple(model(_images(size=(8, 8))).shape) == (2, 8, 8, 2)


def _unpadded_cnn(unpadded_levels):
    """Like Xception and InceptionV3: 3x3 stride-2 convolutions without
    padding (256 -> 127) at the first `unpadded_levels` of 5."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for level in range(5):
        padding = "valid" if level < unpadded_levels else "same"
        x = keras.layers.Conv2D(4, 3, strides=2, padding=padding)(x)
    return keras.Model(inputs, x)


def test_unpadded_encoders_are_named_not_misread():
    with pytest.raises(
        ValueError, match=r"Found no feature map of `encoder` at a stride from 2 to 32"
    ):
        UNet(2, encoder=_unpadded_cnn(5), filters=4)
    with pytest.warns(
        UserWarning,
        match=r"leaves out the encoder's features at "
        r"strides \[2, 4\]: their maps are a few pixels short",
    ):
        model = UNet(2, encoder=_unpadded_cnn(2), filters=4)
    assert model.encoder_levels == ("P3", "P4", "P5")


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_rgb_preprocessing_of_an_encoder_of_other_channels_is_refused(mode):
    # One channel was broadcast to three; four failed in a broadcast.
    for channels in (1, 4):
        with pytest.raises(
            ValueError,
            match=rf"encoder_preprocessing='{mode}' maps RGB images .* takes "
            rf"images of {channels} channels?\. Pass encoder_preprocessing=None",
        ):
            UNet(2, encoder=_small_cnn(channels), encoder_preprocessing=mode)


def test_encoder_weights_for_a_model_encoder_are_refused():
    # They were dropped without a word: the model keeps its own weights.
    with pytest.raises(ValueError, match=r"a model passed as `encoder` keeps the"):
        UNet(2, encoder=_small_cnn(), encoder_weights="imagenet")


@pytest.mark.parametrize("weights", ["Imagenet", "no/such/file.h5", True])
def test_unknown_weights_for_a_named_encoder_are_refused_by_their_name(weights):
    # keras.applications' message named its own `weights`.
    with pytest.raises(
        ValueError,
        match=r"^`encoder_weights` must be None \(random weights\), 'imagenet' or "
        r"the path of a weights file for encoder='resnet50'\. Received: "
        rf"encoder_weights={re.escape(repr(weights))}$",
    ):
        FPN(3, encoder="resnet50", encoder_weights=weights)


def test_a_named_encoder_takes_a_weights_file(tmp_path):
    # As keras.applications takes one, a pathlib.Path too.
    source, _ = encoders.build_encoder("mobilenetv3small")
    path = tmp_path / "small.weights.h5"
    source.save_weights(path)
    model = UNet(2, encoder="mobilenetv3small", encoder_weights=path, filters=4)
    compared = 0
    for layer in source.layers:
        try:
            copy = model.encoder.get_layer(layer.name)
        except ValueError:  # past the pyramid's deepest level
            continue
        for expected, loaded in zip(layer.get_weights(), copy.get_weights()):
            np.testing.assert_array_equal(loaded, expected)
            compared += 1
    assert compared > 10


def test_a_named_encoder_takes_the_models_dtype_policy():
    # keras.applications takes the global policy: `dtype=` reached the
    # decoder only, and the encoder computed in float32.
    model = UNet(2, encoder=TRAINED, filters=4, dtype="mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in model.encoder.layers} == {
        "mixed_bfloat16"
    }
    assert keras.config.dtype_policy().name == "float32"  # Left as it was.


def test_encoder_too_shallow_for_the_depth():
    with pytest.raises(
        ValueError,
        match=r"needs the encoder's features at stride 32, but this encoder "
        r"has features at strides \[2, 4, 8, 16\]\. Use depth=4",
    ):
        UNet(2, encoder=_small_cnn(strides=4))


def test_wrong_channels_for_the_encoder():
    model = UNet(2, encoder=_small_cnn(), filters=4)
    with pytest.raises(ValueError, match=r"built for 3 input channels"):
        model(np.zeros((1, 32, 32, 1), "float32"))


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.resnet_v2.preprocess_input),
    ],
)
def test_preprocessing_matches_keras_applications(mode, reference):
    images = _images(size=(8, 8))
    ours = keras.ops.convert_to_numpy(encoders.preprocess(images, mode))
    np.testing.assert_allclose(ours, reference(images.copy()), atol=1e-4)


def test_named_encoders_apply_their_preprocessing():
    assert UNet(2, encoder=_small_cnn()).encoder_preprocessing is None
    model = UNet(2, encoder=_small_cnn(), encoder_preprocessing="torch")
    assert model.get_config()["encoder_preprocessing"] == "torch"
    assert encoders.ENCODERS["resnet50"][1] == "caffe"
