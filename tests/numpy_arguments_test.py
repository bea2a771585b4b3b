"""Integer arguments take numpy integers (`num_classes = masks.max() + 1`),
as Keras's own layers do, and configs keep them as Python ints; a float or
a bool is still refused by name."""

import json

import keras
import numpy as np
import pytest

import seglayers
from seglayers.datasets import shapes, volumes
from tests.harness import tiny_encoder

N = np.int64(3)


@pytest.mark.parametrize(
    "make, ints",
    [
        (lambda: seglayers.MeanIoU(N, ignore_class=np.int64(255)), ["num_classes"]),
        (lambda: seglayers.MeanDice(N), ["num_classes"]),
        (lambda: seglayers.PerClassIoU(N), ["num_classes"]),
        (lambda: seglayers.PixelAccuracy(N), ["num_classes"]),
        (lambda: seglayers.OneHotMask(N, ignore_class=np.uint8(255)), ["num_classes"]),
        (
            lambda: seglayers.ConvBlock(np.int32(4), num_convs=np.int64(1)),
            ["filters", "num_convs"],
        ),
        (lambda: seglayers.AttentionGate(np.int64(4)), ["filters"]),
        (
            lambda: seglayers.ASPP(np.int64(4), dilation_rates=[np.int64(1), 2]),
            ["filters"],
        ),
        (
            lambda: seglayers.EncoderBlock(np.int64(4), num_convs=np.int64(1)),
            ["filters", "num_convs", "kernel_size"],
        ),
        (
            lambda: seglayers.DecoderBlock(np.int64(4), kernel_size=np.int64(3)),
            ["filters", "num_convs", "kernel_size"],
        ),
        (
            lambda: seglayers.UNet(
                N, filters=np.int64(4), depth=np.int64(2), num_convs=np.int32(1)
            ),
            ["num_classes", "filters", "depth", "num_convs", "spatial_dims"],
        ),
        (
            lambda: seglayers.UNetPlusPlus(N, filters=4, depth=np.int8(2)),
            ["num_classes", "depth", "spatial_dims"],
        ),
    ],
    ids=[
        "MeanIoU",
        "MeanDice",
        "PerClassIoU",
        "PixelAccuracy",
        "OneHotMask",
        "ConvBlock",
        "AttentionGate",
        "ASPP",
        "EncoderBlock",
        "DecoderBlock",
        "UNet",
        "UNetPlusPlus",
    ],
)
def test_numpy_integers_are_kept_as_python_ints(make, ints):
    config = make().get_config()
    json.dumps(config)  # numpy values would not serialize
    for name in ints + ["ignore_class"] * ("ignore_class" in config):
        value = config[name]
        assert value is None or type(value) is int, (name, value)


def test_filters_per_level_and_dilation_rates_are_kept_as_python_ints():
    model = seglayers.UNet(N, filters=[np.int64(4), 8, np.int32(16)], depth=2)
    assert [type(f) for f in model.get_config()["filters"]] == [int] * 3
    aspp = seglayers.ASPP(4, dilation_rates=[np.int64(1), 2])
    assert json.loads(json.dumps(aspp.get_config()))["dilation_rates"] == [1, 2]
    # An array of widths was refused as "must be a positive integer".
    for model_class in (seglayers.UNet, seglayers.UNetPlusPlus):
        model = model_class(N, filters=np.array([4, 8, 16]), depth=2)
        assert json.loads(json.dumps(model.get_config()))["filters"] == [4, 8, 16]


def test_a_model_of_numpy_integers_saves_and_loads(tmp_path):
    model = seglayers.UNet(
        N, filters=4, depth=np.int64(2), spatial_dims=np.int64(3), num_convs=1
    )
    json.dumps(model.get_config())
    volume = np.random.default_rng(0).random((1, 16, 16, 16, 1), np.float32)
    expected = keras.ops.convert_to_numpy(model(volume))
    assert expected.shape == (1, 16, 16, 16, 3)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.spatial_dims == 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(volume)), expected, atol=1e-6
    )


@pytest.mark.parametrize(
    "dataset, size",
    [(shapes, (np.int64(32), 32)), (volumes, (np.int64(16), 16, np.int32(16)))],
    ids=["shapes", "volumes"],
)
def test_built_in_data_sets_take_numpy_sizes_and_counts(dataset, size):
    images, masks = dataset.load_data(np.int64(2), size, num_classes=np.int64(3))
    assert images.shape[1:-1] == tuple(int(s) for s in size)
    assert len(images) == 2 and masks.max() <= 2


@pytest.mark.parametrize("dataset, size", [(shapes, 32), (volumes, 16)])
def test_sizes_may_be_numpy_arrays_of_ints(dataset, size, tmp_path):
    # `np.array(image.shape[:2])` was "not a pair of ints".
    dims = 2 if dataset is shapes else 3
    images, _ = dataset.load_data(2, np.full(dims, size), num_classes=3)
    assert images.shape[1:-1] == (size,) * dims
    model = seglayers.UNet(3, filters=4, depth=1, num_convs=1, spatial_dims=dims)
    tiled = seglayers.predict_tiled(model, images[0], np.full(dims, 8), verbose=0)
    assert tiled.shape == images.shape[1:-1] + (3,)
    if dims == 2:
        mask = seglayers.predict_mask(model, images[0], np.array([8, 8]))
        assert mask.shape == images.shape[1:-1]
    with pytest.raises(ValueError, match=r"Received: tile_size=array\(\[8\.,"):
        seglayers.predict_tiled(model, images[0], np.full(dims, 8.0), verbose=0)


def test_evaluate_segmentation_takes_a_numpy_num_classes():
    model = seglayers.UNet(2, filters=4, depth=1, num_convs=1)
    images = np.zeros((2, 16, 16, 3), np.float32)
    masks = np.zeros((2, 16, 16), np.int32)
    result = seglayers.evaluate_segmentation(
        model, (images, masks), num_classes=np.int64(2), batch_size=np.int64(2)
    )
    assert 0.0 <= result["mean_iou"] <= 1.0


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: seglayers.MeanIoU(np.float64(3.0)),
            TypeError,
            r"`num_classes` must be a positive integer\. "
            r"Received: num_classes=np\.float64\(3\.0\) of type float64",
        ),
        (
            lambda: seglayers.MeanIoU(np.bool_(True)),
            TypeError,
            r"`num_classes` must be a positive integer\. "
            r"Received: num_classes=np\.True_ of type bool",
        ),
        (
            lambda: seglayers.MeanIoU(np.int64(0)),
            ValueError,
            r"`num_classes` must be a positive integer \(1 or more\)\. "
            r"Received: num_classes=np\.int64\(0\)",
        ),
        (
            lambda: seglayers.UNet(3, spatial_dims=np.float64(3.0)),
            ValueError,
            r"`spatial_dims` must be 2.*Received: spatial_dims=np\.float64\(3\.0\)",
        ),
        (
            lambda: seglayers.MeanIoU(3, ignore_class=np.float32(255)),
            TypeError,
            r"`ignore_class` must be an int class id such as 255, or None\. "
            r"Received: ignore_class=np\.float32\(255\.0\)",
        ),
    ],
    ids=["float", "bool", "zero", "float-spatial-dims", "float-ignore-class"],
)
def test_numpy_values_that_are_no_positive_int_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: seglayers.MeanIoU(1, threshold=np.float32(0.5)), "threshold"),
        (lambda: seglayers.PixelAccuracy(1, threshold=np.int64(0)), "threshold"),
        (
            lambda: seglayers.UNet(2, filters=4, depth=2, rescale=np.float32(0.5)),
            "rescale",
        ),
    ],
    ids=["float32-threshold", "int64-threshold", "float32-rescale"],
)
def test_numpy_numbers_are_numbers(make, name):
    # "`threshold` must be a number ... Received: threshold=np.float32(0.5)".
    value = make().get_config()[name]
    assert type(value) is float and value in (0.0, 0.5)


def test_a_numpy_float_validation_split_splits(tmp_path):
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(
            tmp_path / "masks" / f"{i}.png"
        )
    train, val = seglayers.segmentation_dataset_from_directory(
        tmp_path,
        image_size=(8, 8),
        batch_size=None,
        validation_split=np.float32(0.5),
        subset="both",
        seed=0,
    )
    assert len(list(train)) == 2 and len(list(val)) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda d: seglayers.ConvBlock(4, dropout=d),
        lambda d: seglayers.EncoderBlock(4, dropout=d),
        lambda d: seglayers.DecoderBlock(4, dropout=d),
        lambda d: seglayers.ASPP(4, dropout=d),
        lambda d: seglayers.UNet(2, filters=4, depth=2, dropout=d),
        lambda d: seglayers.UNetPlusPlus(2, filters=4, depth=2, dropout=d),
        lambda d: seglayers.FPN(2, encoder=tiny_encoder(), dropout=d),
        lambda d: seglayers.DeepLabV3Plus(2, encoder=tiny_encoder(), dropout=d),
    ],
    ids=[
        "ConvBlock",
        "EncoderBlock",
        "DecoderBlock",
        "ASPP",
        "UNet",
        "UNetPlusPlus",
        "FPN",
        "DeepLabV3Plus",
    ],
)
def test_a_numpy_dropout_is_kept_as_a_python_float(make):
    # The models stored np.float32(0.25) as given: `json.dumps` of the
    # config failed ("Object of type float32 is not JSON serializable").
    config = make(np.float32(0.25)).get_config()
    assert type(config["dropout"]) is float and config["dropout"] == 0.25
    json.dumps(config)
