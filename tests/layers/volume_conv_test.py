"""The 3-D convolutions that JAX on a CPU computes from 2-D ones
(`seglayers/layers/_volume_conv.py`) give Keras's results.

The rewrites are plain `keras.ops`, so their arithmetic is checked against
`keras.ops.conv`/`conv_transpose` on every backend; the layers themselves
take them only on JAX on a CPU (checked in the traced program), with
gradients equal to Keras's there.
"""

import keras
import numpy as np
import pytest

import seglayers
from seglayers.layers import _volume_conv
from seglayers.layers._spatial import LAYERS
from tests import harness

on_jax_cpu = pytest.mark.skipif(
    not _volume_conv._xla_cpu(), reason="the rewrites run on JAX on a CPU only"
)

# (input shape, kernel shape, padding, dilation): odd and unequal sizes,
# kernels thinner than deep, dilation along depth alone or every axis.
CONVS = {
    "3x3x3-same": ((2, 5, 6, 7, 3), (3, 3, 3, 3, 4), "same", (1, 1, 1)),
    "3x3x3-valid": ((1, 6, 5, 4, 2), (3, 3, 3, 2, 3), "valid", (1, 1, 1)),
    "pointwise": ((2, 3, 4, 5, 4), (1, 1, 1, 4, 2), "same", (1, 1, 1)),
    "2x3x1-same": ((1, 5, 7, 4, 2), (2, 3, 1, 2, 3), "same", (1, 1, 1)),
    "dilated-same": ((1, 9, 8, 7, 2), (3, 3, 3, 2, 2), "same", (2, 2, 2)),
    "depth-dilated-valid": ((1, 9, 6, 6, 1), (3, 3, 3, 1, 2), "valid", (3, 1, 1)),
    "5x5x5-same": ((1, 6, 6, 6, 1), (5, 5, 5, 1, 2), "same", (1, 1, 1)),
}


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("case", list(CONVS), ids=list(CONVS))
def test_conv3d_from_2d_is_keras_conv(case):
    shape, kernel_shape, padding, dilation = CONVS[case]
    x, kernel = _random(shape), _random(kernel_shape, seed=1)
    got = _volume_conv.conv3d_from_2d(x, kernel, padding, dilation)
    want = keras.ops.conv(x, kernel, padding=padding, dilation_rate=dilation)
    assert got.shape == want.shape
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), atol=1e-4
    )


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel", [(2, 2, 2), (3, 1, 2)], ids=["2x2x2", "3x1x2"])
def test_transpose_as_product_is_keras_conv_transpose(kernel, padding):
    x = _random((2, 3, 4, 5, 6))
    weights = _random((*kernel, 4, 6), seed=1)
    got = _volume_conv.conv3d_transpose_as_product(x, weights)
    want = keras.ops.conv_transpose(x, weights, strides=kernel, padding=padding)
    size = tuple(n * k for n, k in zip((3, 4, 5), kernel))
    assert got.shape == want.shape == (2, *size, 4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), atol=1e-4
    )


def _pair(kind, dtype="float32", **kwargs):
    """A seglayers layer and Keras's, built on the same weights."""
    ours_cls, keras_cls = {
        "conv": (_volume_conv.Conv3D, keras.layers.Conv3D),
        "transpose": (_volume_conv.Conv3DTranspose, keras.layers.Conv3DTranspose),
    }[kind]
    ours, theirs = ours_cls(dtype=dtype, **kwargs), keras_cls(dtype=dtype, **kwargs)
    shape = (None, 5, 6, 7, 3)
    ours.build(shape)
    theirs.build(shape)
    theirs.set_weights([_random(w.shape, seed=i) for i, w in enumerate(theirs.weights)])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


SAME = dict(padding="same")
LAYER_CASES = {
    "conv-same-bias-relu": (
        "conv",
        dict(filters=4, kernel_size=3, activation="relu", **SAME),
    ),
    "conv-valid-no-bias": (
        "conv",
        dict(filters=2, kernel_size=(3, 2, 1), use_bias=False),
    ),
    "conv-dilated": ("conv", dict(filters=2, kernel_size=3, dilation_rate=2, **SAME)),
    "conv-strided (Keras's)": ("conv", dict(filters=2, kernel_size=3, strides=2)),
    "transpose-2x2x2": ("transpose", dict(filters=4, kernel_size=2, strides=2, **SAME)),
    "transpose-valid-relu": (
        "transpose",
        dict(filters=2, kernel_size=2, strides=2, activation="relu"),
    ),
    "transpose-3x3x3 (Keras's)": (
        "transpose",
        dict(filters=2, kernel_size=3, strides=2, **SAME),
    ),
}


@pytest.mark.parametrize("case", list(LAYER_CASES), ids=list(LAYER_CASES))
def test_layers_compute_what_keras_layers_compute(case):
    kind, kwargs = LAYER_CASES[case]
    ours, theirs = _pair(kind, **kwargs)
    x = _random((2, 5, 6, 7, 3), seed=5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(harness.call(ours, x)),
        keras.ops.convert_to_numpy(harness.call(theirs, x)),
        atol=1e-4,
    )


@pytest.mark.parametrize("kind", ["conv", "transpose"])
def test_layers_under_mixed_bfloat16(kind):
    kwargs = dict(filters=4, kernel_size=2, strides=2) if kind == "transpose" else {}
    kwargs = kwargs or dict(filters=4, kernel_size=3, padding="same")
    ours, theirs = _pair(kind, dtype="mixed_bfloat16", **kwargs)
    x = _random((2, 5, 6, 7, 3), seed=5)
    got = harness.call(ours, x)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
    want = keras.ops.convert_to_numpy(
        keras.ops.cast(harness.call(theirs, x), "float32")
    )
    # bfloat16 keeps 8 bits: a sum of ~80 products rounds differently.
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())


def _conv_ranks(layer, x):
    """The ranks of the convolutions in `layer`'s traced program, and
    whether it has a matrix product."""
    import jax

    jaxpr = jax.make_jaxpr(lambda v, x: layer.stateless_call(v, [], x)[0])(
        [v.value for v in layer.trainable_variables], x
    )
    eqns = jaxpr.jaxpr.eqns
    convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
    ranks = sorted(e.invars[0].aval.ndim for e in convs)
    return ranks, any(e.primitive.name == "dot_general" for e in eqns)


@on_jax_cpu
def test_on_jax_cpu_no_3d_convolution_is_left_to_xla():
    x = _random((2, 5, 6, 7, 3))
    conv, _ = _pair("conv", filters=4, kernel_size=3, padding="same")
    assert _conv_ranks(conv, x) == ([4, 4, 4], False)  # one 2-D per depth tap
    transpose, _ = _pair("transpose", filters=4, kernel_size=2, strides=2)
    assert _conv_ranks(transpose, x) == ([], True)
    strided, _ = _pair("conv", filters=4, kernel_size=3, strides=2)
    assert _conv_ranks(strided, x) == ([5], False)  # not rewritten: Keras's
    _volume_conv.ENABLED = False
    try:
        assert _conv_ranks(conv, x) == ([5], False)
    finally:
        _volume_conv.ENABLED = True


@on_jax_cpu
@pytest.mark.parametrize("kind", ["conv", "transpose"])
def test_gradients_on_jax_are_keras_gradients(kind):
    import jax

    kwargs = dict(filters=3, kernel_size=2, strides=2, padding="same")
    if kind == "conv":
        kwargs = dict(filters=3, kernel_size=3, padding="same", dilation_rate=(2, 1, 1))
    layers = _pair(kind, **kwargs)
    x = _random((2, 5, 6, 7, 3), seed=7)

    def gradients(layer):
        def loss(variables, x):
            y = layer.stateless_call(variables, [], x)[0]
            return keras.ops.sum(keras.ops.sin(y))

        values = [v.value for v in layer.trainable_variables]
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(values, x)

    (ours_w, ours_x), (keras_w, keras_x) = (gradients(layer) for layer in layers)
    np.testing.assert_allclose(ours_x, keras_x, atol=1e-4)
    for a, b in zip(ours_w, keras_w):
        np.testing.assert_allclose(a, b, atol=1e-3)


@on_jax_cpu
@pytest.mark.parametrize("depth", [1, 2], ids=["shorter", "equal-to-reach"])
def test_a_valid_kernel_deeper_than_the_input_raises_as_in_keras(depth):
    ours, theirs = _pair("conv", filters=2, kernel_size=3)
    x = _random((2, depth, 6, 7, 3))
    for layer in (theirs, ours):
        with pytest.raises(ValueError, match="resulted in an empty output"):
            layer(x)


def test_models_of_volumes_use_them_and_files_keep_keras_paths(tmp_path):
    assert LAYERS[3].conv is _volume_conv.Conv3D
    assert LAYERS[3].conv_transpose is _volume_conv.Conv3DTranspose
    for cls in (_volume_conv.Conv3D, _volume_conv.Conv3DTranspose):
        layer = cls(2, 2, strides=2 if cls is _volume_conv.Conv3DTranspose else 1)
        assert keras.saving.get_registered_name(cls) == f"seglayers>{cls.__name__}"
        revived = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        assert type(revived) is cls and revived.get_config() == layer.get_config()
    # Weights of a list are saved under the class's name: Keras's.
    model = seglayers.UNet(2, filters=2, depth=1, spatial_dims=3)
    model.build((None, 4, 4, 4, 1))
    path = tmp_path / "unet.weights.h5"
    model.save_weights(path)
    import h5py

    with h5py.File(path) as f:
        names = []
        f.visit(names.append)
    assert any(name.endswith("convs/conv3d_1/vars") for name in names), names
