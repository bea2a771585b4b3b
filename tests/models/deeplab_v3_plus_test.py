import inspect

import keras
import numpy as np
import pytest

from seglayers import DeepLabV3Plus
from tests.harness import call, run_model_test, tiny_encoder

# tiny_encoder: 3x3 stride-2 convolutions of 4, 4, 8, 8, 8 channels (P1-P5).
TINY = {"num_classes": 3, "filters": 8, "low_level_filters": 4}


@pytest.mark.parametrize(
    "kwargs, cross_backend",
    [
        (TINY, True),
        (
            {
                **TINY,
                "output_stride": 8,
                "dilation_rates": [1, 2],
                "separable": False,
                "dropout": 0.0,
                "output_activation": None,
                "encoder_trainable": False,
            },
            False,
        ),
    ],
    ids=["default", "stride8-plain-frozen"],
)
def test_model_harness(kwargs, cross_backend, tmp_path):
    run_model_test(
        DeepLabV3Plus,
        {**kwargs, "encoder": tiny_encoder()},
        (2, 64, 64, 3),
        tmp_path,
        cross_backend,
        light=not cross_backend,  # the second configuration: no compiling
    )


def _encoder_params(levels):
    widths = [(3, 4), (4, 4), (4, 8), (8, 8), (8, 8)][:levels]
    return sum(9 * i * o + o for i, o in widths)


@pytest.mark.parametrize("output_stride, separable", [(16, True), (8, False)])
def test_parameter_count(output_stride, separable):
    model = DeepLabV3Plus(
        **TINY, output_stride=output_stride, separable=separable,
        encoder=tiny_encoder(),
    )  # fmt: skip
    model.build((None, None, None, 3))
    c, c2, f, low, classes, rates = 8, 4, 8, 4, 3, 3  # c: P4 or P3, c2: P2

    def conv3x3(i, o):  # no bias: a batch normalization follows
        return 9 * i + i * o if separable else 9 * i * o

    norm = 4 * f  # gamma, beta, moving mean and variance
    aspp = (
        (c * f + norm)  # 1x1 branch
        + rates * (conv3x3(c, f) + norm)
        + (c * f + norm)  # image pooling
        + ((rates + 2) * f * f + norm)  # projection
    )
    decoder = (
        (conv3x3(f, f) + norm)  # after the ASPP
        + (c2 * low + 4 * low)  # stride-4 features reduced
        + (conv3x3(f + low, f) + norm)  # fusion
    )
    head = f * classes + classes
    # The encoder's layers deeper than the output stride are not used.
    encoder = _encoder_params(output_stride.bit_length() - 1)
    expected = encoder + aspp + decoder + head
    assert model.count_params() == expected
    assert expected == (2651 if output_stride == 16 else 4487)


@pytest.mark.parametrize(
    "output_stride, deepest, rates", [(16, "P4", (6, 12, 18)), (8, "P3", (12, 24, 36))]
)
def test_the_aspp_reads_the_output_stride(output_stride, deepest, rates):
    model = DeepLabV3Plus(**TINY, output_stride=output_stride, encoder=tiny_encoder())
    assert model.encoder_levels[-1] == deepest
    assert model.depth == output_stride.bit_length() - 1
    assert model.aspp.dilation_rates == rates
    assert "depth" not in model.get_config()
    pyramid = model.encode(keras.ops.ones((1, 67, 64, 3)))
    assert tuple(model.aspp(pyramid[deepest]).shape) == (
        (1, 5, 4, 8) if output_stride == 16 else (1, 9, 8, 8)
    )
    # Fused at stride 4 (67 rounds up to 17), upsampled by the base.
    assert tuple(model.decode(pyramid).shape) == (1, 17, 16, 8)
    assert model.output_level == 2


def test_named_encoder_and_its_default():
    assert inspect.signature(DeepLabV3Plus).parameters["encoder"].default == "resnet50"
    model = DeepLabV3Plus(num_classes=1, encoder="mobilenetv3small", filters=16)
    inputs = np.ones((1, 33, 47, 3), "float32")
    assert tuple(call(model, inputs).shape) == (1, 33, 47, 1)


def _stride_8_encoder():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 8, strides=8, padding="same")(inputs)
    for _ in range(2):
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, x, name="patchify")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"output_stride": 32},
            ValueError,
            r"must be one of 8 or 16.*output_stride=32",
        ),
        (
            {"output_stride": 16.0},
            TypeError,
            r"`output_stride` must be one of 8 or 16, an int, not float; pass "
            r"output_stride=16\. Received: output_stride=16\.0",
        ),
        (
            {"output_stride": np.float64(8)},
            TypeError,
            r"an int, not float64; pass output_stride=8\.",
        ),
        ({"encoder": None}, ValueError, r"no encoder of its own.*encoder=None"),
        ({"spatial_dims": 3}, ValueError, r"2-D model.*spatial_dims=3"),
        ({"dilation_rates": []}, TypeError, r"dilation_rates=\[\]"),
        ({"low_level_filters": 0}, ValueError, r"low_level_filters=0"),
        ({"separable": 1}, TypeError, r"separable=1"),
        ({"dropout": 1.5}, ValueError, r"dropout=1.5"),
        # A bare TypeError: "got multiple values for keyword argument 'depth'".
        (
            {"depth": 3},
            ValueError,
            r"`DeepLabV3Plus` takes no `depth`: `output_stride` sets it .* "
            r"Received: depth=3",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DeepLabV3Plus(num_classes=2, **{"encoder": tiny_encoder(), **kwargs})


def test_a_numpy_integer_output_stride_is_stored_as_an_int():
    model = DeepLabV3Plus(
        num_classes=2, encoder=tiny_encoder(), filters=8, output_stride=np.int64(8)
    )
    assert type(model.get_config()["output_stride"]) is int
    assert model.output_stride == 8 and model.depth == 3


def test_numpy_integer_dilation_rates_are_stored_as_ints():
    model = DeepLabV3Plus(
        num_classes=2, encoder=tiny_encoder(), dilation_rates=[np.int64(1), 2]
    )
    assert [type(r) for r in model.get_config()["dilation_rates"]] == [int, int]


def test_an_encoder_without_stride_4_features_is_refused():
    with pytest.raises(
        ValueError,
        match=r"levels P2, P4 .*has none at stride 4 \(its levels: P3, P4\)"
        r".*encoder='patchify'",
    ):
        DeepLabV3Plus(num_classes=2, encoder=_stride_8_encoder())
