import keras
import numpy as np
import pytest

from seglayers import OneHotMask
from tests.harness import _check_config, assert_saved_model_predicts_the_same

PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[[0, 1], [2, 255]]], "int32"),
        np.array([[[0, 1], [2, 255]]], "uint8")[..., None],
        np.array([[[0.0, 1.0], [2.0, 255.0]]], "float32")[..., None],
    ],
    ids=["int32 (H, W)", "uint8 (H, W, 1)", "float (H, W, 1)"],
)
def test_ids_of_any_form(mask):
    out = _np(OneHotMask(3, ignore_class=255)(mask))
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(
        out[0].reshape(4, 3), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    )


def test_class_ids_are_fixed_not_per_image():
    # The tutorial bug: np.unique per image renumbers classes. Here id 2 is
    # always channel 2, whatever else the image holds.
    layer = OneHotMask(4)
    only_two = _np(layer(np.full((1, 2, 2), 2)))
    assert only_two[..., 2].all() and not only_two[..., :2].any()


def test_palette_masks():
    rgb = np.array([[[0, 0, 0], [0, 128, 0]], [[128, 0, 0], [255, 255, 255]]], "uint8")
    layer = OneHotMask(3, ignore_class=255, palette=PALETTE + [[255, 255, 255]])
    out = _np(layer(rgb[None]))
    np.testing.assert_array_equal(out[0, ..., :].argmax(-1), [[0, 2], [1, 0]])
    assert out[0, 1, 1].sum() == 0  # the ignore colour


def test_unknown_colours_raise_eagerly():
    rgb = np.zeros((1, 2, 2, 3), "uint8")
    rgb[0, 0, 0] = [1, 2, 3]
    with pytest.raises(
        ValueError,
        match=r"colours not in `palette` \(each a triple of whole numbers in "
        r"\[0, 255\]\): \[\[1, 2, 3\]\]",
    ):
        OneHotMask(3, palette=PALETTE)(rgb)


@pytest.mark.parametrize(
    "colour, dtype",
    [
        ([0, 256, 0], "int32"),  # was [1, 0, 0]'s class 1 (24-bit code alias)
        ([0, 0, 65536], "int64"),
        ([1.5, 0, 0], "float32"),  # was class 1: truncated
        ([np.nan, 0, 0], "float32"),  # was black, class 0
        ([1e10, 0, 0], "float64"),
        ([-1, 0, 0], "int16"),
    ],
)
def test_values_that_are_no_colour_raise_eagerly_and_are_unknown_when_traced(
    colour, dtype
):
    palette = [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    rgb = np.zeros((1, 2, 2, 3), dtype)
    rgb[0, 0, 1] = colour
    layer = OneHotMask(3, palette=palette)
    with pytest.raises(ValueError, match=r"colours not in `palette`.*: \[\["):
        layer(rgb)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with pytest.raises(tf.errors.InvalidArgumentError, match=r"not in `palette`"):
            _traced(layer, rgb)
    else:  # jax.jit cannot fail: a zero row, as for a colour not in `palette`.
        out = _traced(layer, rgb)[0]
        assert not out[0, 1].any() and out[0, 0].tolist() == [1, 0, 0]


def test_out_of_range_ids_raise_eagerly():
    with pytest.raises(
        ValueError,
        match=r"class ids \[-1, 3, 7\] outside \[0, 3\), and `ignore_class` is 255\. "
        r"Raise the number of classes, set `ignore_class`",
    ):
        OneHotMask(3, ignore_class=255)(np.array([[0, 3, 7, -1, 255]]))


def _traced(layer, mask):
    """`layer(mask)` inside tf.data (TensorFlow) or jax.jit (JAX)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return next(iter(tf.data.Dataset.from_tensors(mask).map(layer))).numpy()
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.jit(layer)(mask))
    pytest.skip("no traced function on this backend")


@pytest.mark.parametrize(
    "mask, found, ids",
    [
        (np.array([[0, 3, 1, -2]], "int32"), r"\[3 -2\]", [0, -1, 1, -1]),
        (np.array([[0.0, 0.5, 1.0, 2.0]], "float32"), r"\[0\.5\]", [0, -1, 1, 2]),
    ],
    ids=["out of range", "fraction"],
)
def test_bad_ids_in_a_traced_function(mask, found, ids):
    layer = OneHotMask(3)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # tf.data fails when it runs, listing the values.
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=r"OneHotMask\(num_classes=3\): the mask holds class ids outside "
            r"\[0, 3\) or fractional ids \(listed after this message\).*" + found,
        ):
            _traced(layer, mask)
        return
    # jax.jit cannot fail: bad pixels become zero rows, never a class (a
    # fraction is not rounded to the nearest id).
    out = _traced(layer, mask)[0]
    np.testing.assert_array_equal(np.where(out.any(-1), out.argmax(-1), -1), ids)


@pytest.mark.parametrize("ignore_class", [None, -1])
def test_unknown_colours_in_a_traced_function(ignore_class):
    layer = OneHotMask(3, ignore_class=ignore_class, palette=PALETTE)
    rgb = np.zeros((1, 2, 2, 3), "uint8")
    rgb[0, 0, 1] = [1, 2, 3]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Before, tf.data gave the colour an all-zero row: an ignored pixel.
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=r"OneHotMask\(num_classes=3\): the mask holds colours not in "
            r"`palette` \(each shown below as id -[12]; call the layer on the "
            r"mask outside tf\.data to list the colours\)",
        ):
            _traced(layer, rgb)
        return
    out = _traced(layer, rgb)[0]  # jax.jit cannot fail: a zero row.
    assert not out[0, 1].any() and out[0, 0].tolist() == [1, 0, 0]


def test_valid_ids_in_a_traced_function():
    layer = OneHotMask(3, ignore_class=255)
    mask = np.array([[0, 255, 2, 1]], "uint8")
    np.testing.assert_array_equal(_traced(layer, mask), _np(layer(mask)))


def test_fractional_masks_raise_eagerly():
    # What a bilinear resize makes of a mask: ids blended at every edge.
    with pytest.raises(
        ValueError,
        match=r"fractional ids \[0\.25, 1\.5\], and no `ignore_class` is set.*"
        r"resize them with nearest neighbour, as bilinear interpolation",
    ):
        OneHotMask(3)(np.array([[[0.0], [0.25], [1.5], [2.0]]], "float32"))


@pytest.mark.parametrize(
    "shape, num_classes, match",
    [
        ((1, 4, 4, 3), 3, r"3 channels, as many as num_classes, so it looks one-hot"),
        ((4, 4, 3), 3, r"3 channels, as many as num_classes, so it looks one-hot"),
        ((1, 4, 4, 3), 5, r"3 channels, so it looks like a colour mask"),
        ((1, 4, 4, 2), 5, r"2 channels, but class ids have one"),
    ],
)
def test_masks_with_several_channels_are_refused(shape, num_classes, match):
    mask = np.zeros(shape, "float32")
    mask[..., 0] = 1  # A valid one-hot (or colour) mask, all class 0.
    with pytest.raises(ValueError, match=match + r".*Received: mask shape"):
        OneHotMask(num_classes)(mask)


def test_binary_num_classes_1_says_what_to_do():
    with pytest.raises(ValueError, match=r"For binary masks \(ids 0 and 1\)"):
        OneHotMask(1)(np.array([[0, 1]]))


def test_sample_weights():
    layer = OneHotMask(3, ignore_class=255)
    mask = np.array([[0, 1, 2, 255]])
    np.testing.assert_array_equal(_np(layer.sample_weights(mask)), [[1, 1, 1, 0]])
    weighted = _np(layer.sample_weights(mask, class_weights=[0.5, 1.0, 2.0]))
    np.testing.assert_array_equal(weighted, [[0.5, 1.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match=r"`class_weights` needs 3 values"):
        layer.sample_weights(mask, class_weights=[1.0])
    # Keras's `class_weight` form; a dict failed deep in the backend.
    from_dict = layer.sample_weights(mask, class_weights={1: 1.0, 0: 0.5, 2: 2.0})
    np.testing.assert_array_equal(_np(from_dict), weighted)
    with pytest.raises(ValueError, match=r"a dict needs the keys 0, 1, \.\.\."):
        layer.sample_weights(mask, class_weights={1: 1.0, 2: 2.0, 3: 3.0})
    as_tensor = keras.ops.convert_to_tensor([0.5, 1.0, 2.0])
    np.testing.assert_array_equal(_np(layer.sample_weights(mask, as_tensor)), weighted)
    as_array = layer.sample_weights(mask, np.array([0.5, 1.0, 2.0]))
    np.testing.assert_array_equal(_np(as_array), weighted)


@pytest.mark.parametrize(
    "class_weights, match",
    [
        ([1.0, np.nan, 2.0], r"class_weights\[1\]=nan is not"),  # was all NaN
        (np.array([1.0, -2.0, 3.0]), r"class_weights\[1\]=.*-2\.0.* is not"),
        (np.ones((3, 1)), r"this is a 2-D array"),  # was broadcast over W
        (2.0, r"this is a float"),  # was "object of type 'float' has no len()"
        ([1.0, np.inf, 2.0], r"^`class_weights` must be finite: an infinite"),
        # An eager tensor was taken unchecked: NaN weights for every pixel.
        ("tensor", r"class_weights\[1\]=.*nan.* is not"),
    ],
)
def test_sample_weights_refuse_weights_that_are_no_weights(class_weights, match):
    layer = OneHotMask(3, ignore_class=255)
    if isinstance(class_weights, str):
        class_weights = keras.ops.convert_to_tensor([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=match):
        layer.sample_weights(np.array([[0, 1, 2, 255]]), class_weights)


def test_in_a_model_saved_and_loaded(tmp_path):
    inputs = keras.Input((4, 4, 1))
    outputs = OneHotMask(3, ignore_class=255, dtype="float32")(inputs)
    model = keras.Model(inputs, outputs)
    assert tuple(outputs.shape) == (None, 4, 4, 3)
    masks = np.random.default_rng(0).integers(0, 3, size=(2, 4, 4, 1)).astype("float32")
    assert_saved_model_predicts_the_same(model, masks, tmp_dir=tmp_path)


def test_mixed_precision_output_dtype():
    keras.config.set_dtype_policy("mixed_bfloat16")
    out = OneHotMask(2)(np.array([[0, 1]]))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"


def test_compute_output_shape():
    assert OneHotMask(5).compute_output_shape((2, 8, 8)) == (2, 8, 8, 5)
    assert OneHotMask(5).compute_output_shape((2, 8, 8, 1)) == (2, 8, 8, 5)
    palette = OneHotMask(3, palette=PALETTE)
    assert palette.compute_output_shape((None, 8, 8, 3)) == (None, 8, 8, 3)


def test_config():
    _check_config(
        OneHotMask,
        {"num_classes": 3, "ignore_class": 255, "palette": PALETTE + [[9, 9, 9]]},
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, r"num_classes=0"),
        ({"num_classes": 3, "ignore_class": "x"}, TypeError, r"ignore_class='x'"),
        (
            {"num_classes": 3, "ignore_class": 1},
            ValueError,
            r"`ignore_class`=1 is also a class id \(ids run over \[0, 3\) for "
            r"num_classes=3\).*Received: ignore_class=1, num_classes=3",
        ),
        (
            {"num_classes": 1, "ignore_class": 1},
            ValueError,
            r"`ignore_class`=1 is also a class id \(ids run over \[0, 2\)",
        ),
        (
            {"num_classes": 3, "palette": [[0, 0, 0]]},
            ValueError,
            r"`palette` must be a list of 3 `\[r, g, b\]` colours",
        ),
        (
            {"num_classes": 2, "palette": [[0, 0, 0], [0, 0, 300]]},
            ValueError,
            r"ints in 0\.\.255",
        ),
        (
            {"num_classes": 2, "palette": [[1, 1, 1], [1, 1, 1]]},
            ValueError,
            r"`palette` repeats a colour",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        OneHotMask(**kwargs)


def test_palette_needs_rgb():
    with pytest.raises(ValueError, match=r"With a `palette`, masks must be RGB"):
        OneHotMask(3, palette=PALETTE)(np.zeros((1, 2, 2), "int32"))


@pytest.mark.parametrize("ignore_class", [255, -1, None])
def test_rows_eager_and_traced(ignore_class):
    ids = [0, 2, 1] + ([ignore_class] if ignore_class is not None else [])
    mask = np.array([ids], "int32")
    expected = np.eye(3, dtype="float32")[[0, 2, 1]]
    if ignore_class is not None:
        expected = np.concatenate([expected, np.zeros((1, 3), "float32")])
    layer = OneHotMask(3, ignore_class=ignore_class)
    np.testing.assert_array_equal(_np(layer(mask))[0], expected)
    np.testing.assert_array_equal(_traced(layer, mask)[0], expected)


def test_bad_ids_beside_the_ignore_class_in_a_traced_function():
    layer = OneHotMask(3, ignore_class=255)
    mask = np.array([[0, 255, 7, 2, 254]], "int32")
    if keras.backend.backend() != "tensorflow":
        out = _traced(layer, mask)[0]
        np.testing.assert_array_equal(out.sum(-1), [1, 0, 0, 1, 0])
        return
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[7 254\]"):
        _traced(layer, mask)


def test_empty_batch_in_a_traced_function():
    out = _traced(OneHotMask(3, ignore_class=255), np.zeros((0, 4, 4, 1), "int32"))
    assert out.shape == (0, 4, 4, 3)


def test_masks_of_unknown_size_in_tf_data():
    # A PNG decoded in tf.data has no known height or width, and Keras's
    # TensorFlow `view` then failed as the graph was built.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a tf.data map runs the layer on TensorFlow only")
    import tensorflow as tf

    def decoded(mask):
        png = tf.io.encode_png(mask)
        dataset = tf.data.Dataset.range(1).map(lambda _: tf.io.decode_png(png, 1))
        assert dataset.element_spec.shape.as_list() == [None, None, 1]
        return next(iter(dataset.map(layer))).numpy()

    layer = OneHotMask(3, ignore_class=255)
    mask = np.array([[[0], [2]], [[255], [1]]], "uint8")
    np.testing.assert_array_equal(decoded(mask), _np(layer(mask)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[7\]"):
        decoded(np.array([[[0], [7]]], "uint8"))
    # decode_png's default channels=0 leaves the last axis unknown: a
    # channel or the width? It was read as the width, (H, W, 1, classes).
    png = tf.io.encode_png(mask)
    unknown = tf.data.Dataset.range(1).map(lambda _: tf.io.decode_png(png))
    with pytest.raises(ValueError, match=r"last axis, of unknown size.*channels=1"):
        unknown.map(layer)


def test_float_ids_are_not_cast_to_the_policy():
    # Keras casts float inputs to a layer's compute dtype: under
    # mixed_bfloat16, ids 257 and 259 were read as 256 and 260.
    layer = OneHotMask(300, dtype="mixed_bfloat16")
    out = _np(layer(np.array([[257.0, 259.0, 261.0]], "float32")))
    assert out.astype("float32").argmax(-1).tolist() == [[257, 259, 261]]


@pytest.mark.parametrize(
    "dtype, value", [("int64", 2**32 + 1), ("uint64", 2**32 + 2), ("int64", 2 - 2**32)]
)
def test_ids_beyond_int32_are_out_of_range(dtype, value):
    # JAX (without 64-bit types) wrapped them as Keras converted the array:
    # 2**32 + 1 was class 1.
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        OneHotMask(3)(np.array([[0, value]], dtype))
