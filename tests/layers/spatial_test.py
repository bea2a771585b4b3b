import keras
import numpy as np
import pytest

from seglayers.layers import decoder_block
from seglayers.layers._spatial import LAYERS, match_spatial_size, upsample_bilinear_2x


def test_match_spatial_size_pads_and_crops_at_the_far_edge():
    x = np.arange(1, 13, dtype="float32").reshape(1, 3, 4, 1)
    padded = keras.ops.convert_to_numpy(match_spatial_size(x, np.zeros((1, 4, 5, 1))))
    np.testing.assert_array_equal(padded[0, :3, :4, 0], x[0, :, :, 0])
    assert padded[0, 3].sum() == 0 and padded[0, :, 4].sum() == 0
    cropped = keras.ops.convert_to_numpy(match_spatial_size(x, np.zeros((1, 2, 2, 1))))
    np.testing.assert_array_equal(cropped[0, :, :, 0], x[0, :2, :2, 0])
    assert match_spatial_size(x, np.zeros((1, 3, 4, 7))) is x


@pytest.mark.parametrize(
    "reference",
    [(5, 4, 8), (3, 6, 5), (2, 2, 2), (4, 7, 6)],
    ids=["pad-all", "crop-pad-mixed", "crop-all", "odd"],
)
def test_match_spatial_size_over_three_axes(reference):
    x = np.random.default_rng(0).uniform(1, 2, size=(2, 3, 5, 6, 2))
    x = x.astype("float32")
    out = keras.ops.convert_to_numpy(
        match_spatial_size(x, np.zeros((2, *reference, 7), "float32"))
    )
    assert out.shape == (2, *reference, 2)
    # What is kept is the near corner of `x`, in place; the rest is zeros.
    kept = tuple(slice(0, min(r, s)) for r, s in zip(reference, x.shape[1:-1]))
    index = (slice(None), *kept, slice(None))
    np.testing.assert_array_equal(out[index], x[index])
    mask = np.ones(out.shape, bool)
    mask[index] = False
    assert np.all(out[mask] == 0)


class _MatchSpatialSize(keras.layers.Layer):
    def call(self, inputs):
        return match_spatial_size(*inputs)

    def compute_output_shape(self, input_shape):
        return input_shape[1][:-1] + input_shape[0][-1:]


def test_match_spatial_size_at_sizes_known_only_at_run_time():
    # A functional model with unknown sizes: on TensorFlow, `predict` traces
    # the dynamic path (ops.pad + reshape) over every spatial axis.
    x = keras.Input((None, None, None, 3))
    reference = keras.Input((None, None, None, 1))
    model = keras.Model([x, reference], _MatchSpatialSize()([x, reference]))
    data = np.random.default_rng(0).uniform(1, 2, size=(1, 4, 6, 5, 3))
    data = data.astype("float32")
    out = model.predict([data, np.zeros((1, 5, 3, 5, 1), "float32")], verbose=0)
    assert out.shape == (1, 5, 3, 5, 3)
    np.testing.assert_array_equal(out[:, :4], data[:, :, :3])
    assert np.all(out[:, 4] == 0)


def _linear_2x(x, axis):
    """Numpy reference: 2x linear interpolation along `axis`, half-pixel
    centres, edges clamped (as `tf.image.resize` and Keras compute it)."""
    n = x.shape[axis]
    source = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = 2 * n
    weight = (source - low).reshape(shape)
    return (1 - weight) * np.take(x, low, axis) + weight * np.take(x, high, axis)


def _reference_upsampling(x):
    for axis in range(1, x.ndim - 1):  # separable: one axis after another
        x = _linear_2x(x, axis)
    return x


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8), (7, 4)])
def test_bilinear_upsampling_is_keras_resize(size):
    # The same numbers as `ops.image.resize` (and so as the `UpSampling2D`
    # that seglayers used before), so saved models predict as they did.
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    expected = keras.ops.image.resize(
        x, (2 * size[0], 2 * size[1]), interpolation="bilinear"
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upsample_bilinear_2x(x)),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(_reference_upsampling(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1, 1), (2, 3, 5), (4, 4, 4), (5, 1, 3)])
def test_trilinear_upsampling_is_separable_linear_interpolation(size):
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upsample_bilinear_2x(x)),
        _reference_upsampling(x.astype("float64")),
        atol=1e-5,
    )


def test_trilinear_upsampling_at_sizes_known_only_at_run_time():
    volumes = keras.Input((None, None, None, 2))
    upsample = decoder_block._TrilinearUpSampling3D(2)  # DecoderBlock's
    model = keras.Model(volumes, upsample(volumes))
    rng = np.random.default_rng(0)
    for size in [(2, 3, 4), (3, 3, 5)]:
        x = rng.normal(size=(1, *size, 2)).astype("float32")
        np.testing.assert_allclose(
            model.predict(x, verbose=0), _reference_upsampling(x), atol=1e-5
        )


def _graph_bool_error():
    if keras.backend.backend() != "tensorflow":
        return Exception
    import tensorflow as tf

    return tf.errors.OperatorNotAllowedInGraphError


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="a TensorFlow graph bug"
)
@pytest.mark.xfail(strict=True, raises=_graph_bool_error())
def test_plain_keras_bilinear_upsampling_fails_at_a_second_size():
    # Why DecoderBlock upsamples with `upsample_bilinear_2x`: Keras 3.15.1's
    # `ops.image.resize` checks `size[0] <= 0` as a Python bool, which a size
    # known only at run time cannot give. When this passes, the workaround
    # can go.
    image = keras.Input((None, None, 3))
    model = keras.Model(
        image, keras.layers.UpSampling2D(2, interpolation="bilinear")(image)
    )
    for size in [(8, 8), (10, 10)]:
        model.predict(np.ones((1, *size, 3), "float32"), verbose=0)


@pytest.mark.parametrize("kind", ["max_pooling", "average_pooling"])
def test_3d_pooling_under_mixed_float16(kind):
    x = np.random.default_rng(0).normal(size=(1, 4, 5, 6, 2)).astype("float32")
    expected = keras.ops.convert_to_numpy(getattr(LAYERS[3], kind)(2)(x))
    keras.config.set_dtype_policy("mixed_float16")
    pooled = getattr(LAYERS[3], kind)(2)(x)
    assert keras.backend.standardize_dtype(pooled.dtype) == "float16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled).astype("float32"), expected, atol=1e-2
    )


def _on_tensorflow_cpu():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _kernel_not_found_error():
    if not _on_tensorflow_cpu():
        return Exception
    import tensorflow as tf

    return tf.errors.NotFoundError


@pytest.mark.skipif(
    not _on_tensorflow_cpu(), reason="TensorFlow lacks the kernels on CPU only"
)
@pytest.mark.xfail(strict=True, raises=_kernel_not_found_error())
@pytest.mark.parametrize(
    "pooling", [keras.layers.MaxPooling3D, keras.layers.AveragePooling3D]
)
def test_plain_keras_3d_pooling_fails_in_float16_on_cpu(pooling):
    # Why the 3-D blocks pool float16 in float32 (`_Float32Pooling`):
    # TensorFlow 2.21 registers no float16 MaxPool3D / AvgPool3D CPU kernel
    # (tensorflow/tensorflow#7632). When this passes, the workaround can go.
    pooling(2, dtype="mixed_float16")(np.ones((1, 4, 4, 4, 1), "float32"))
