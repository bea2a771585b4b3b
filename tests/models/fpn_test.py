import inspect

import keras
import numpy as np
import pytest

from seglayers import FPN
from tests.harness import call, run_model_test, tiny_encoder

# tiny_encoder: 3x3 stride-2 convolutions of 4, 4, 8, 8, 8 channels (P1-P5).
TINY = {"num_classes": 3, "pyramid_channels": 8, "segmentation_channels": 8}


@pytest.mark.parametrize(
    "kwargs, cross_backend",
    [
        (TINY, True),
        (
            {
                **TINY,
                "merge_policy": "cat",
                "dropout": 0.0,
                "depth": 4,
                "output_activation": None,
                "encoder_trainable": False,
                "rescale": 1 / 255,
            },
            False,
        ),
    ],
    ids=["default", "cat-depth4-frozen"],
)
def test_model_harness(kwargs, cross_backend, tmp_path):
    run_model_test(
        FPN,
        {**kwargs, "encoder": tiny_encoder()},
        (2, 64, 64, 3),
        tmp_path,
        cross_backend,
        light=not cross_backend,  # the second configuration: no compiling
    )


def test_parameter_count():
    model = FPN(**TINY, encoder=tiny_encoder())
    model.build((None, None, None, 3))
    p, s, classes = 8, 8, 3
    encoder = sum(9 * i * o + o for i, o in [(3, 4), (4, 4), (4, 8), (8, 8), (8, 8)])
    # Lateral 1x1 convolutions (with bias) from P5, P4, P3 (8 channels), P2 (4).
    laterals = 3 * (8 * p + p) + (4 * p + p)
    # 3x3 convolution (no bias) + group normalization (gamma, beta): three
    # at P5, two at P4, one at P3 and one at P2; each level's first from `p`
    # channels, the others from `s`.
    segmentation = 4 * (9 * p * s + 2 * s) + 3 * (9 * s * s + 2 * s)
    head = s * classes + classes
    assert model.count_params() == encoder + laterals + segmentation + head == 6151


@pytest.mark.parametrize("merge_policy, channels", [("add", 8), ("cat", 32)])
def test_decoder_stages(merge_policy, channels):
    model = FPN(**TINY, merge_policy=merge_policy, encoder=tiny_encoder())
    assert model.levels == ["P5", "P4", "P3", "P2"]
    assert [b.name for b in model.segmentation_blocks] == [
        "segmentation_P5_0", "segmentation_P5_1", "segmentation_P5_2",
        "segmentation_P4_0", "segmentation_P4_1", "segmentation_P3_0",
        "segmentation_P2_0",
    ]  # fmt: skip
    pyramid = model.encode(keras.ops.ones((1, 67, 64, 3)))
    assert tuple(pyramid["P5"].shape) == (1, 3, 2, 8)
    # Merged at stride 4 (67 rounds up to 17), upsampled by the base.
    assert tuple(model.decode(pyramid).shape) == (1, 17, 16, channels)
    assert model.output_level == 2


def test_named_encoder_and_its_default():
    assert inspect.signature(FPN).parameters["encoder"].default == "resnet50"
    model = FPN(num_classes=2, encoder="mobilenetv3small", pyramid_channels=32,
                segmentation_channels=32, encoder_trainable=False)  # fmt: skip
    assert not model.encoder.trainable
    inputs = np.ones((1, 33, 47, 3), "float32")
    assert tuple(call(model, inputs).shape) == (1, 33, 47, 2)


def _stride_8_encoder():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 8, strides=8, padding="same")(inputs)
    for _ in range(2):
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, x, name="patchify")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"encoder": None}, ValueError, r"no encoder of its own.*encoder=None"),
        (
            {"spatial_dims": 3},
            ValueError,
            r"2-D model.*UNet\(spatial_dims=3\).*spatial_dims=3",
        ),
        ({"depth": 6}, ValueError, r"`depth` must be one of 3, 4 or 5.*depth=6"),
        ({"merge_policy": "max"}, ValueError, r"merge_policy='max'"),
        ({"dropout": -0.1}, ValueError, r"dropout=-0.1"),
        ({"pyramid_channels": 0}, ValueError, r"pyramid_channels=0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FPN(num_classes=2, **{"encoder": tiny_encoder(), **kwargs})


def test_an_encoder_without_a_level_is_refused():
    with pytest.raises(
        ValueError,
        match=r"has none at stride 4 \(its levels: P3, P4, P5\).*encoder='patchify'",
    ):
        FPN(num_classes=2, encoder=_stride_8_encoder())
