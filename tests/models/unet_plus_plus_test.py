import keras
import numpy as np
import pytest

from seglayers import DiceCrossEntropyLoss, UNetPlusPlus
from tests.harness import run_model_test

TINY = {"num_classes": 3, "filters": 4, "depth": 2}


def _tiny_encoder(channels=(4, 4, 8, 8, 16), first_stride=2):
    """A functional CNN with features at strides 2 to 32 (from 4 with
    `first_stride=4`), `channels` at each."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, width in enumerate(channels):
        stride = first_stride if i == 0 else 2
        x = keras.layers.Conv2D(width, 3, strides=stride, padding="same")(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name="tiny_encoder")


@pytest.mark.parametrize(
    "kwargs, cross_backend",
    [
        (
            {
                **TINY,
                "deep_supervision": True,
                "upsampling": "bilinear",
                "residual": True,
                "dropout": 0.1,
                "rescale": 1 / 255,
            },
            True,
        ),
        ({"num_classes": 2, "filters": 2, "encoder": _tiny_encoder()}, False),
    ],
    ids=["own-encoder", "functional-encoder"],
)
def test_model_harness(kwargs, cross_backend, tmp_path):
    run_model_test(
        UNetPlusPlus,
        kwargs,
        (2, 64, 64, 3),
        tmp_path,
        cross_backend,
        light=not cross_backend,  # the second configuration: no compiling
    )


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_one_node_per_cell_of_the_triangle(depth):
    model = UNetPlusPlus(num_classes=2, filters=2, depth=depth)
    # Rows 0 .. depth-1; row i has depth - i nodes.
    assert len(model.nodes) == depth * (depth + 1) // 2
    assert [node.name for node in model.nodes][-1] == f"node_0_{depth}"


def test_nodes_over_an_encoder_start_at_stride_2():
    full = UNetPlusPlus(num_classes=2, encoder=_tiny_encoder())
    # Rows 1 to 4 nested (4 + 3 + 2 + 1 nodes), the stride-1 row its last.
    assert len(full.nodes) == 11 and (0, 5) in full.node_keys
    assert not [key for key in full.node_keys if key[0] == 0 and key[1] < 5]
    # Without stride-2 features, row 1 is its last node alone, as in UNet.
    lacking = UNetPlusPlus(num_classes=2, encoder=_tiny_encoder(first_stride=4))
    assert [key for key in lacking.node_keys if key[0] <= 1] == [(1, 4), (0, 5)]
    assert len(lacking.nodes) == 8
    outputs = lacking(np.ones((1, 64, 64, 3), "float32"))
    assert tuple(outputs.shape) == (1, 64, 64, 2)


def _conv_block(inputs, outputs, batch_statistics=2):
    """Two 3×3 convolutions without bias, each with a batch normalization
    (`batch_statistics` weights per channel)."""
    convs = 9 * inputs * outputs + 9 * outputs * outputs
    return convs + 2 * batch_statistics * outputs


def test_parameter_count_of_the_own_encoder():
    # filters 4, depth 2: widths 4, 8, 16; 3 input channels, 3 classes.
    encoder = _conv_block(3, 4, 4) + _conv_block(4, 8, 4) + _conv_block(8, 16, 4)

    def node(below, row, out):  # 2×2 transposed convolution (with bias)
        return 4 * below * out + out + _conv_block(out + row, out, 4)

    decoder = node(8, 4, 4) + node(16, 8, 8) + node(8, 4 + 4, 4)
    head = 4 * 3 + 3
    model = UNetPlusPlus(**TINY)
    model.build((None, None, None, 3))
    assert model.count_params() == encoder + decoder + head == 8459


def _smp_unet_plus_plus_decoder(encoder_channels, decoder_channels):
    """segmentation_models.pytorch's `UnetPlusPlusDecoder` parameter count
    (batch norm, no attention, no center), from its channel bookkeeping:
    `encoder_channels` at strides 2 to 32, `decoder_channels` deepest
    first."""
    deep_first = list(encoder_channels)[::-1]
    in_channels = [deep_first[0]] + list(decoder_channels[:-1])
    skip_channels = deep_first[1:] + [0]
    total = 0
    for layer in range(len(in_channels) - 1):
        for depth in range(layer + 1):
            if depth == 0:
                block = (
                    in_channels[layer],
                    skip_channels[layer] * (layer + 1),
                    decoder_channels[layer],
                )
            else:
                block = (
                    skip_channels[layer - 1],
                    skip_channels[layer] * (layer + 1 - depth),
                    skip_channels[layer],
                )
            total += _conv_block(block[0] + block[1], block[2])
    return total + _conv_block(in_channels[-1], decoder_channels[-1])


@pytest.mark.parametrize(
    "encoder_channels, filters",
    [((4, 4, 8, 8, 16), 2), ((64, 64, 128, 256, 512), 16)],
    ids=["tiny", "resnet34-channels"],
)
def test_decoder_has_the_parameters_of_smp(encoder_channels, filters):
    model = UNetPlusPlus(
        num_classes=3,
        filters=filters,
        upsampling="nearest",  # smp's
        encoder=_tiny_encoder(encoder_channels),
    )
    model.build((None, None, None, 3))
    decoder = sum(
        int(np.prod(w.shape)) for node in model.nodes for w in node.trainable_weights
    )
    decoder_channels = [filters * 2**level for level in range(5)][::-1]
    expected = _smp_unet_plus_plus_decoder(encoder_channels, decoder_channels)
    assert decoder == expected


def test_deep_supervision_averages_the_top_row_through_one_head():
    kwargs = {**TINY, "depth": 3, "output_activation": None}
    model = UNetPlusPlus(**kwargs, deep_supervision=True)
    model.build((None, None, None, 3))
    plain = UNetPlusPlus(**kwargs)
    plain.build((None, None, None, 3))
    assert plain.count_params() == model.count_params()  # one head either way
    inputs = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3))
    inputs = inputs.astype("float32")
    outputs = keras.ops.convert_to_numpy(model(inputs))
    assert outputs.shape == (2, 32, 32, 3)
    grid = model.nested_features(model.encode(inputs))
    heads = [keras.ops.convert_to_numpy(model.head(grid[(0, j)])) for j in (1, 2, 3)]
    np.testing.assert_allclose(outputs, np.mean(heads, axis=0), rtol=1e-5, atol=1e-5)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(inputs)), heads[-1], rtol=1e-5, atol=1e-5
    )


def test_volumes():
    model = UNetPlusPlus(num_classes=2, filters=2, depth=2, spatial_dims=3)
    volumes = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 16, 1))
    outputs = model(volumes.astype("float32"))
    assert tuple(outputs.shape) == (2, 16, 16, 16, 2)
    assert isinstance(model.nodes[0].conv_block.convs[0], keras.layers.Conv3D)
    model.compile("sgd", loss=DiceCrossEntropyLoss())
    masks = np.zeros((2, 16, 16, 16, 1), "int32")
    history = model.fit(volumes.astype("float32"), masks, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"deep_supervision": True, "encoder": "mobilenetv3small"},
            ValueError,
            r"`deep_supervision` averages the full-resolution nodes .* Pass "
            r"encoder=None or deep_supervision=False\. Received: "
            r"deep_supervision=True, encoder='mobilenetv3small'",
        ),
        ({"deep_supervision": 1}, TypeError, r"deep_supervision"),
        (
            {"spatial_dims": 3, "encoder": "mobilenetv3small"},
            ValueError,
            r"Pluggable encoders are 2-D image models",
        ),
        ({"depth": 6, "encoder": _tiny_encoder()}, ValueError, r"stride 64"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UNetPlusPlus(num_classes=2, **kwargs)
