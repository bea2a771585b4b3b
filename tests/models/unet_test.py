import gc
import itertools
import json

import keras
import numpy as np
import pytest

from seglayers import DiceLoss, MeanIoU, UNet
from seglayers.models import _steps
from tests.harness import (
    TORCH_SOFTMAX_SCCE,
    run_model_test,
)

TINY = {"num_classes": 3, "filters": 4, "depth": 2}
EVERY_OPTION = {
    "num_classes": 3,
    "filters": [4, 6, 8],
    "depth": 2,
    "num_convs": 3,
    "normalization": "group",
    "activation": "gelu",
    "dropout": 0.2,
    "upsampling": "bilinear",
    "attention": True,
    "residual": True,
    "output_activation": None,
    "rescale": 1 / 255,
}
# Trained with keras.losses.SparseCategoricalCrossentropy: on probabilities
# (the default softmax head) for TINY, on logits for EVERY_OPTION.
TRAINED_WITH_KERAS_LOSS = [
    pytest.param(TINY, id="default", marks=TORCH_SOFTMAX_SCCE),
    pytest.param(EVERY_OPTION, id="every-option"),
]


def _data(n=4, size=32, channels=3, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(n, size, size, channels)).astype("float32")
    masks = rng.integers(0, num_classes, size=(n, size, size, 1)).astype("int32")
    return images, masks


def _paper_convs(model):
    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))
    ]


BINARY = {
    "num_classes": 1,
    "filters": 4,
    "depth": 3,
    "num_convs": 1,
    "normalization": "layer",
    "upsampling": "nearest",
    "rescale": 0.5,
}


def test_model_harness(tmp_path):
    run_model_test(UNet, EVERY_OPTION, (2, 64, 64, 3), tmp_path, mixed_training=True)


@pytest.mark.parametrize(
    "kwargs",
    [TINY, BINARY, {**TINY, "encoder": "mobilenetv3small"}],
    ids=["default", "binary", "encoder"],
)
def test_model_harness_light(kwargs, tmp_path):
    run_model_test(UNet, kwargs, (2, 64, 64, 3), tmp_path, light=True)


def test_model_harness_in_3d(tmp_path):
    kwargs = {
        "num_classes": 2,
        "filters": 4,
        "depth": 2,
        "normalization": "group",
        "upsampling": "bilinear",
        "attention": True,
        "spatial_dims": 3,
    }
    run_model_test(UNet, kwargs, (2, 16, 16, 16, 1), tmp_path, light=True)
    model = UNet(**kwargs)
    model.build((None, None, None, None, 1))
    assert isinstance(model.head, keras.layers.Conv3D)
    assert model.encoder_blocks[0].spatial_dims == 3


@pytest.mark.parametrize(
    "spatial_dims, normalization, layer",
    [
        (2, "auto", "batch"),
        (3, "auto", "group"),
        (3, "batch", "batch"),
        (2, "instance", "instance"),
    ],
)
def test_auto_normalization_is_group_for_volumes(spatial_dims, normalization, layer):
    kwargs = {**TINY, "spatial_dims": spatial_dims}
    if normalization != "auto":
        kwargs["normalization"] = normalization
    model = UNet(**kwargs)
    blocks = [*model.encoder_blocks, model.bottleneck, *model.decoder_blocks]
    assert {block.normalization for block in blocks} == {layer}
    # The config keeps the argument as given, so files saved with "batch"
    # (every 0.1.0 file) reload as they were.
    assert model.get_config()["normalization"] == normalization
    assert UNet.from_config(model.get_config()).get_config() == model.get_config()


def test_default_2d_unet_is_the_0_1_0_one():
    auto = UNet(**TINY)
    batch = UNet(**TINY, normalization="batch")
    for model in (auto, batch):
        model.build((None, None, None, 3))
    assert [w.path for w in auto.weights] == [w.path for w in batch.weights]
    auto.set_weights(batch.get_weights())
    images, _ = _data(n=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(auto(images / 255.0)),
        keras.ops.convert_to_numpy(batch(images / 255.0)),
    )


def test_3d_default_harness(tmp_path):
    kwargs = {"num_classes": 2, "filters": 4, "depth": 2, "spatial_dims": 3}
    run_model_test(UNet, kwargs, (1, 16, 16, 16, 1), tmp_path, light=True)


def test_3d_with_an_encoder_is_refused():
    with pytest.raises(ValueError, match=r"`encoder` needs\s+spatial_dims=2"):
        UNet(2, encoder="resnet50", spatial_dims=3)


@pytest.mark.parametrize("num_classes, params", [(2, 31_031_810), (21, 31_033_045)])
def test_the_papers_network(num_classes, params):
    model = UNet(
        num_classes=num_classes,
        filters=64,
        depth=4,
        normalization=None,
        upsampling="transpose",
    )
    model.build((None, None, None, 3))
    assert model.count_params() == params
    convs = _paper_convs(model)
    assert len(convs) == 23
    assert sum(isinstance(c, keras.layers.Conv2DTranspose) for c in convs) == 4
    assert sorted({c.kernel_size for c in convs}) == [(1, 1), (2, 2), (3, 3)]
    # The contracting path doubles 64 → 1024; the expanding path halves back.
    widths = [block.filters for block in model.encoder_blocks]
    assert widths + [model.bottleneck.filters] == [64, 128, 256, 512, 1024]
    assert [block.filters for block in model.decoder_blocks] == [512, 256, 128, 64]


def _conv_params(c_in, c_out, kernel_volume=27, bias=True):
    return c_in * kernel_volume * c_out + (c_out if bias else 0)


# Çiçek et al. (2016), figure 1: each level's first convolution has half the
# channels of its second (3 -> 32 -> 64 at the top); up-convolutions keep the
# channels (512 -> 512) and the decoder convolves [up, skip] to the level's
# width. Their 19,069,955 counts each convolution's kernel and bias, no bias
# for the up-convolutions and no batch normalization parameters.
_CICEK_ENCODER = [(3, 32, 64), (64, 64, 128), (128, 128, 256), (256, 256, 512)]
_CICEK_DECODER = [(512, 256, 256), (256, 128, 128), (128, 64, 64)]
CICEK_3D_UNET = {
    "num_classes": 3,
    "filters": [64, 128, 256, 512],
    "depth": 3,
    "normalization": "batch",
    "upsampling": "transpose",
    "spatial_dims": 3,
}


def _cicek_encoder_params():
    return sum(
        _conv_params(c_in, half) + _conv_params(half, width)
        for c_in, half, width in _CICEK_ENCODER
    )


def _cicek_decoder_params():
    return sum(
        _conv_params(c_in, c_in, kernel_volume=8, bias=False)
        + _conv_params(c_in + skip, width)
        + _conv_params(width, width)
        for c_in, skip, width in _CICEK_DECODER
    )


def test_the_cicek_3d_unet():
    paper = _cicek_encoder_params() + _cicek_decoder_params() + _conv_params(64, 3, 1)
    assert paper == 19_069_955  # as the paper states
    model = UNet(**CICEK_3D_UNET)
    model.build((None, None, None, None, 3))
    assert model.count_params() == 22_405_827
    assert [block.filters for block in model.decoder_blocks] == [256, 128, 64]
    # Counted as the paper counts (no normalization), the difference is two
    # choices of `ConvBlock`/`DecoderBlock`: full-width first convolutions
    # (+7,025,664) and up-convolutions to the level's width (-3,698,240).
    plain = UNet(**{**CICEK_3D_UNET, "normalization": None})
    plain.build((None, None, None, None, 3))
    assert plain.count_params() == 22_397_379 == paper + 7_025_664 - 3_698_240
    encoder = [*plain.encoder_blocks, plain.bottleneck]
    assert sum(b.count_params() for b in encoder) - _cicek_encoder_params() == (
        7_025_664
    )
    decoder = sum(b.count_params() for b in plain.decoder_blocks)
    assert decoder - _cicek_decoder_params() == -3_698_240


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (17, 63)])
def test_any_input_size(size):
    model = UNet(**TINY)
    model.build((None, None, None, 3))
    outputs = model(np.ones((1, *size, 3), "float32"))
    assert tuple(outputs.shape) == (1, *size, 3)


def test_summary_shows_the_size_it_was_built_for():
    # Every layer showed 256 x 256, the size free axes are traced at.
    model = UNet(**TINY)
    model.build((None, 33, 47, 3))
    lines = []
    model.summary(print_fn=lines.append, line_length=120)
    (head,) = [line for line in lines if "head (" in line]
    assert "(None, 33, 47, 3)" in head, head
    np.testing.assert_array_equal(
        model(np.ones((1, 64, 64, 3), "float32")).shape, (1, 64, 64, 3)
    )


def test_a_dict_of_inputs_says_to_map_it_to_pairs():
    # The dict's keys were printed as an input shape.
    images = {"images": np.ones((1, 32, 32, 3), "float32")}
    model = UNet(**TINY)
    with pytest.raises(ValueError, match=r"not a dict.*keys \['images'\]"):
        model.predict(images)
    model.build((None, None, None, 3))  # A built model: an AttributeError.
    for call in (model.predict, model):
        with pytest.raises(ValueError, match=r"not a dict.*keys \['images'\]"):
            call(images)


def test_fit_refuses_class_weight_with_the_fix():
    # Keras's class_weight reads one label per sample: it failed on masks
    # with "only 0-dimensional arrays can be converted to Python scalars".
    model = UNet(**TINY)
    model.compile("adam", DiceLoss())
    images, masks = np.ones((2, 32, 32, 3), "float32"), np.zeros((2, 32, 32), "int32")
    match = (
        r"unet\.fit cannot use `class_weight`.*DiceCrossEntropyLoss\("
        r"class_weights=.*sample_weights\(masks, class_weights\).*Received: "
        r"class_weight=\{0: 1\.0, 1: 2\.0\}"
    )
    with pytest.raises(ValueError, match=match):
        model.fit(images, masks, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=match):  # fit's 10th parameter
        model.fit(images, masks, 2, 1, 0, None, 0.0, None, True, {0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match=r"unet\.train_on_batch cannot use `class_w"):
        model.train_on_batch(images, masks, class_weight={0: 1.0, 1: 2.0})


MASKS_OF_ANOTHER_SIZE = r"cover different pixels|Incompatible shapes"


class _Batches(keras.utils.PyDataset):
    """Two batches of two."""

    def __init__(self, images, masks):
        super().__init__()
        self.images, self.masks = images, masks

    def __len__(self):
        return 2

    def __getitem__(self, index):
        batch = slice(2 * index, 2 * index + 2)
        return self.images[batch], self.masks[batch]


# Keras warns at the end of a generator of unknown length, plain models too.
@pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning")
@pytest.mark.parametrize(
    "data", ["arrays", "dataset", "generator", "pydataset", "built"]
)
def test_a_step_that_failed_leaves_the_model_usable(data):
    # On TensorFlow, Keras builds the model and its metrics inside the first
    # trace of the step; when that trace raised (masks of the wrong size
    # here), the retry failed ("Creating variables on a non-first call...")
    # and the weights of a model built there were left empty.
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 2, (4, 32, 32)).astype("int32")
    model = UNet(**TINY)
    if data == "built":
        model.build((None, 32, 32, 3))
    model.compile("adam", DiceLoss(), metrics=[MeanIoU(TINY["num_classes"])])

    def batches(masks):
        if data == "generator":  # No shape up front: read from a first batch.
            pairs = ((images[i : i + 2], masks[i : i + 2]) for i in (0, 2))
            return {"x": pairs}
        if data == "pydataset":
            return {"x": _Batches(images, masks)}
        if data != "dataset":
            return {"x": images, "y": masks, "batch_size": 2}
        tf = pytest.importorskip("tensorflow")
        return {"x": tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)}

    for call, kwargs in ((model.fit, {"shuffle": False}), (model.evaluate, {})):
        with pytest.raises(ValueError, match=r"cover different pixels"):
            call(**batches(masks[:, :16, :16]), **kwargs, verbose=0)
        call(**batches(masks), **kwargs, verbose=0)
    # On JAX, Keras had taken the weights off the model for the call: a
    # failed evaluate left none ("'NoneType' object is not callable").
    # (TensorFlow traces this one with free sizes: the shapes meet at run
    # time, in an InvalidArgumentError.)
    before = model.predict(images, verbose=0)
    with pytest.raises(Exception, match=MASKS_OF_ANOTHER_SIZE):
        model.evaluate(**batches(masks[:, :16, :16]), verbose=0)
    np.testing.assert_array_equal(model.predict(images, verbose=0), before)
    # A step of fit that failed trained nothing (on TensorFlow, batch
    # normalization's statistics may have moved before the loss failed).
    trainable = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    with pytest.raises(Exception, match=MASKS_OF_ANOTHER_SIZE):
        model.fit(**batches(masks[:, :16, :16]), shuffle=False, verbose=0)
    for expected, weight in zip(trainable, model.trainable_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), expected)
    with pytest.raises(ValueError, match=r"cover different pixels"):
        model.train_on_batch(images, masks[:, :16])
    logs = model.train_on_batch(images, masks, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 <= logs["mean_iou"] <= 1
    assert np.isfinite(model.predict(images, verbose=0)).all()


def test_a_generator_read_to_build_the_model_is_left_open():
    # On TensorFlow the first batch is read to build the model, and the
    # generator re-made; the caller's generator must go on after the call.
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 2, (2, 32, 32)).astype("int32")

    def forever():
        while True:
            yield images, masks

    batches = forever()
    model = UNet(**TINY)
    model.compile("adam", DiceLoss())
    model.fit(batches, steps_per_epoch=1, shuffle=False, verbose=0)
    gc.collect()
    assert np.isfinite(model.evaluate(batches, steps=1, verbose=0))


def test_the_remade_generator_never_closes_the_callers():
    def numbers():
        yield from range(3)

    caller = numbers()
    first = list(itertools.islice(caller, 1))
    remade = _steps._chained(first, caller)
    assert [next(remade), next(remade)] == [0, 1]
    remade.close()  # As when Keras drops it mid-way (`yield from` closed both).
    assert list(caller) == [2]


def test_a_fit_that_fails_mid_epoch_keeps_the_steps_that_ran():
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, (2, 32, 32)).astype("int32")
    model = UNet(**TINY)
    model.compile(keras.optimizers.SGD(0.1), DiceLoss())
    model.fit(images, masks, verbose=0)
    before = model.get_weights()

    def batches():  # The second batch's masks are of another size.
        yield images, masks
        yield images, masks[:, :16, :16]

    with pytest.raises(Exception, match=MASKS_OF_ANOTHER_SIZE):
        model.fit(batches(), steps_per_epoch=2, shuffle=False, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_any_input_size_in_a_traced_predict():
    model = UNet(num_classes=2, filters=4, depth=3)
    predictions = model.predict(np.ones((2, 50, 45, 1), "float32"), verbose=0)
    assert predictions.shape == (2, 50, 45, 2)


def test_integer_images_are_cast_not_refused():
    model = UNet(**TINY)  # No `rescale`: nothing else casts.
    images = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), "uint8")
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        model.predict(images.astype("float32"), verbose=0),
        atol=1e-6,
    )


def test_bad_inputs_are_named_after_predictions_at_many_sizes():
    # After a few sizes TensorFlow traces the predict step with free sizes
    # and channels, where `call` cannot see them: the data are checked
    # before the step (once, a 3x3 input failed in a pooling op).
    model = UNet(num_classes=2, filters=4, depth=2)
    for size in (16, 20, 24, 28, 32, 36):
        model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"must be at least 4\. Received: input"):
        model.predict(np.zeros((1, 3, 3, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"built for 3 input channels"):
        model.predict_on_batch(np.zeros((1, 16, 16, 4), "float32"))
    assert model.predict(np.zeros((1, 40, 40, 3)), verbose=0).shape == (1, 40, 40, 2)


def test_a_data_set_of_another_channel_count_is_refused_after_relaxed_traces():
    # A data set skips the array check: after two sizes TensorFlow traces a
    # one-channel batch with unknown channels, which must not slip through
    # (an encoder's per-channel mean would broadcast it to three).
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow relaxes retraced shapes; JAX traces each one")
    import tensorflow as tf

    model = UNet(num_classes=2, filters=4, depth=2)

    def batches(size, channels):
        images = np.zeros((2, size, size, channels), "float32")
        return tf.data.Dataset.from_tensor_slices(images).batch(2)

    for size in (32, 48):
        model.predict(batches(size, 3), verbose=0)
    with pytest.raises(ValueError, match=r"was built for 3 input channels"):
        model.predict(batches(32, 1), verbose=0)


@pytest.mark.parametrize(
    "spatial_dims, shape, match",
    [
        (
            2,
            (16, 16, 3),
            r"add a batch axis \(`x\[None\]`\).*input shape \(16, 16, 3\)",
        ),
        (2, (1, 8, 8, 8, 1), r"for volumes, build the model with spatial_dims=3"),
        (3, (1, 16, 16, 3), r"a channel axis.*for images, .*spatial_dims=2"),
    ],
)
def test_inputs_of_the_wrong_rank_say_what_to_do(spatial_dims, shape, match):
    model = UNet(num_classes=2, filters=4, depth=2, spatial_dims=spatial_dims)
    with pytest.raises(ValueError, match=match):
        model.predict(np.zeros(shape, "float32"), verbose=0)


def test_too_small_input():
    model = UNet(num_classes=2, filters=4, depth=4)
    with pytest.raises(
        ValueError,
        match=r"depth=4 halves the input 4 times, so height and width must be at "
        r"least 16\. Received: input shape \(1, 12, 20, 3\)\. Resize or pad the "
        r"images to at least \(16, 16\), or use a smaller `depth`",
    ):
        model(np.ones((1, 12, 20, 3), "float32"))


def test_wrong_number_of_channels():
    model = UNet(**TINY)
    model.build((None, None, None, 3))
    with pytest.raises(
        ValueError,
        match=r"built for 3 input channels\. Received: input shape \(1, 32, 32, 1\) "
        r"with 1 channel\. Convert the images \(e\.g\. grayscale to RGB\)",
    ):
        model(np.ones((1, 32, 32, 1), "float32"))


def test_wrong_number_of_channels_in_3d():
    model = UNet(num_classes=2, filters=4, depth=2, spatial_dims=3)
    model.build((None, None, None, None, 2))
    with pytest.raises(
        ValueError,
        match=r"built for 2 input channels\. Received: input shape "
        r"\(1, 16, 16, 16, 1\) with 1 channel\. Convert the volumes \(the same "
        r"modalities, stacked on the last axis\)",
    ):
        model(np.ones((1, 16, 16, 16, 1), "float32"))


def test_unknown_channels():
    with pytest.raises(ValueError, match=r"needs a known number of input channels"):
        UNet(**TINY).build((None, None, None, None))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"depth": 0}, ValueError, r"`depth` must be a positive integer.*depth=0"),
        ({"depth": "4"}, TypeError, r"`depth` must be a positive integer.*depth='4'"),
        ({"filters": -8}, ValueError, r"filters=-8"),
        ({"num_classes": 0}, ValueError, r"num_classes=0"),
        (
            {"filters": [8, 16]},
            ValueError,
            r"`filters` as a list needs one width per level, `depth` \+ 1 = 5 values "
            r".*e\.g\. \[16, 32, 64, 128, 256\]\. "
            r"Received: filters=\[8, 16\] with depth=4",
        ),
        ({"filters": [8, 16, 0, 8, 8]}, ValueError, r"filters\[2\]=0"),
        (
            {"normalization": "bach"},
            ValueError,
            r"`normalization` must be one of 'auto', 'batch', 'group', 'instance', "
            r"'layer' or None\. Received: normalization='bach'",
        ),
        (
            {"upsampling": "conv"},
            ValueError,
            r"`upsampling` must be one of 'transpose', 'bilinear' or 'nearest'",
        ),
        (
            {"output_activation": "relu"},
            ValueError,
            r"`output_activation` must be one of 'auto', 'softmax', 'sigmoid' or "
            r"None\. Received: output_activation='relu'",
        ),
        ({"activation": "rleu"}, ValueError, r"activation='rleu'"),
        ({"dropout": -0.1}, ValueError, r"dropout=-0.1"),
        ({"attention": "yes"}, TypeError, r"attention='yes'"),
        (
            {"encoder": "resnet5"},
            ValueError,
            r"Unknown encoder name 'resnet5'\. Known names: convnextsmall, ",
        ),
        ({"encoder": 42}, TypeError, r"`encoder` must be a name such as 'resnet50'"),
        ({"encoder": "resnet50", "depth": 6}, ValueError, r"at most 5 .* depth=6"),
        (
            {"encoder_preprocessing": "imagenet"},
            ValueError,
            r"`encoder_preprocessing` must be one of 'auto', 'caffe', 'tf', "
            r"'torch' or None",
        ),
        ({"encoder_trainable": 0}, TypeError, r"encoder_trainable=0"),
        ({"rescale": "1/255"}, TypeError, r"`rescale` must be a number"),
        # NaN made every output NaN; 0 every image blank.
        ({"rescale": float("nan")}, ValueError, r"finite number other than 0"),
        ({"rescale": 0}, ValueError, r"Received: rescale=0"),
        # A softmax over one channel was 1 everywhere.
        (
            {"num_classes": 1, "output_activation": "softmax"},
            ValueError,
            r"A softmax over one channel is 1 everywhere: .* use "
            r"output_activation='sigmoid'",
        ),
        # Encoder arguments without an encoder were kept and changed nothing.
        *[
            (
                {name: value},
                ValueError,
                rf"`{name}` is for a pluggable encoder, and this `UNet` has none "
                rf".* drop `{name}`\. Received: {name}={value!r}",
            )
            for name, value in [
                ("encoder_weights", "imagenet"),
                ("encoder_trainable", False),
                ("encoder_preprocessing", "caffe"),
            ]
        ],
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UNet(num_classes=kwargs.pop("num_classes", 2), **kwargs)


def test_numpy_bools_are_stored_as_bools():
    model = UNet(3, filters=4, depth=2, attention=np.True_, residual=np.True_)
    config = json.loads(json.dumps(model.get_config()))
    assert config["attention"] is True and config["residual"] is True


def test_encoder_arguments_of_older_files_without_an_encoder_load():
    # Saved before they were refused, where they changed nothing.
    config = UNet(3, filters=4, depth=2).get_config()
    config.update(encoder_weights="imagenet", encoder_trainable=False)
    model = UNet.from_config(config)
    assert (model.encoder_weights, model.encoder_trainable) == (None, True)
    # A one-class softmax, refused when made, loads as it predicted.
    config = UNet(1, filters=4, depth=2, output_activation="sigmoid").get_config()
    model = UNet.from_config({**config, "output_activation": "softmax"})
    with pytest.warns(UserWarning, match=r"softmax .* will always return the value 1"):
        outputs = keras.ops.convert_to_numpy(model(np.ones((1, 8, 8, 3))))
    # Not exactly 1 on every CPU: TensorFlow's softmax gave 0.99999994 on
    # one 2-core machine of the project's kind.
    np.testing.assert_allclose(outputs, 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "num_classes, output_activation, check",
    [
        (3, "auto", lambda y: np.allclose(y.sum(-1), 1, atol=1e-5)),
        (1, "auto", lambda y: ((y > 0) & (y < 1)).all()),
        (3, None, lambda y: (y < 0).any()),
        (
            2,
            "sigmoid",
            lambda y: ((y > 0) & (y < 1)).all() and not np.allclose(y.sum(-1), 1),
        ),
    ],
)
def test_output_activation(num_classes, output_activation, check):
    model = UNet(num_classes, filters=4, depth=2, output_activation=output_activation)
    images, _ = _data(n=2)
    outputs = keras.ops.convert_to_numpy(model(images / 255.0))
    assert outputs.shape[-1] == num_classes
    assert check(outputs)


def test_rescale_is_applied_first():
    images, _ = _data(n=1)
    scaled = UNet(**TINY, rescale=1 / 255)
    plain = UNet(**TINY)
    plain.build((None, None, None, 3))
    scaled.build((None, None, None, 3))
    plain.set_weights(scaled.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scaled(images)),
        keras.ops.convert_to_numpy(plain(images / 255.0)),
        atol=1e-5,
    )


def test_dropout_sits_at_the_end_of_the_contracting_path():
    model = UNet(num_classes=2, filters=4, depth=3, dropout=0.5)
    rates = [block.dropout for block in model.encoder_blocks]
    assert rates == [0.0, 0.0, 0.5]
    assert model.bottleneck.dropout == 0.5
    assert all(block.dropout == 0.0 for block in model.decoder_blocks)


@pytest.mark.parametrize("kwargs", TRAINED_WITH_KERAS_LOSS)
def test_trains(kwargs):
    model = UNet(**kwargs)
    images, masks = _data()
    from_logits = kwargs.get("output_activation", "auto") is None
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
    )
    history = model.fit(images / 255.0, masks, epochs=3, batch_size=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_saving_as_hdf5_is_refused_before_writing(tmp_path):
    model = UNet(num_classes=2, filters=4, depth=2)
    model.build((None, 32, 32, 3))
    for name in ("model.h5", "model.hdf5"):
        with pytest.raises(ValueError, match=r"cannot be saved as HDF5.*\.keras"):
            model.save(tmp_path / name)
        assert not (tmp_path / name).exists()


def _tiny_data(n=2):
    rng = np.random.default_rng(0)
    images = rng.random((n, 32, 32, 3)).astype("float32")
    return images, rng.integers(0, 3, (n, 32, 32)).astype("int32")


def test_a_failed_call_inside_fit_leaves_fit_going():
    # A callback's preview that fails (and is caught) dropped only its own
    # step function, not fit's.
    images, masks = _tiny_data()
    failures = []

    class Preview(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            try:
                self.model.predict(images[:, :2], verbose=0)  # Too small.
            except ValueError as error:
                failures.append(error)

    model = UNet(**TINY)
    model.compile("adam", DiceLoss())
    history = model.fit(images, masks, epochs=2, callbacks=[Preview()], verbose=0)
    assert len(failures) == 2 and len(history.history["loss"]) == 2


def test_a_failed_call_keeps_weights_set_after_a_train_on_batch():
    # JAX: train_on_batch leaves its state behind; a failed evaluate wrote
    # it back over the weights set since.
    images, masks = _tiny_data()
    model = UNet(**TINY)
    model.compile("adam", DiceLoss())
    model.train_on_batch(images, masks)
    weights = [np.zeros_like(w) + 0.01 for w in model.get_weights()]
    model.set_weights(weights)
    with pytest.raises(Exception, match=MASKS_OF_ANOTHER_SIZE):
        model.evaluate(images, masks[:, :16, :16], verbose=0)
    for expected, value in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(value, expected)


def test_a_first_fit_that_raised_in_its_step_can_be_run_again():
    # JAX: the optimizer's variables, made in the call, lost their values
    # when its first (eager) step raised on ids out of range.
    images, masks = _tiny_data()
    model = UNet(**TINY)
    model.compile("adam", DiceLoss(), metrics=[MeanIoU(3)], run_eagerly=True)
    with pytest.raises(ValueError, match=r"out of range|outside"):
        model.fit(images, masks + 5, verbose=0)
    history = model.fit(images, masks, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
