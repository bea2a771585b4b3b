"""Exports of a UNet trained on 64×64 serve any height and width, in every
format, with `predict`'s numbers.

SavedModel on TensorFlow and JAX; TFLite and ONNX on TensorFlow (Keras's
LiteRT export needs TensorFlow or PyTorch, and its ONNX export on JAX needs
`jax2onnx`, which the `export` extra does not install).
"""

import os
import re

import keras
import numpy as np
import pytest

import seglayers
from seglayers.inference.export import (
    any_size_signature,
    export_arguments,
    load_exported,
    restore_onnx_output_rank,
)

ON_TF = keras.backend.backend() == "tensorflow"
ON_JAX = keras.backend.backend() == "jax"
TF_ONLY = pytest.mark.skipif(
    not ON_TF,
    reason="Keras exports LiteRT only on TensorFlow (and PyTorch), and ONNX on "
    "JAX only through jax2onnx, not in the export extra",
)
# The training size and two others, odd ones included.
SIZES = [(64, 64), (48, 80), (37, 53)]
VARIANTS = {
    "transpose-batch": dict(num_classes=3),
    "bilinear-attention-group": dict(
        num_classes=3, upsampling="bilinear", attention=True, normalization="group"
    ),
    "nearest-layer-residual-binary": dict(
        num_classes=1,
        upsampling="nearest",
        normalization="layer",
        residual=True,
        rescale=1 / 255,
    ),
}
NOT_TORCH = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras 3.15.1 exports no SavedModel from PyTorch (refused by name: "
    "test_any_size_exports_from_pytorch_are_refused)",
)
FORMATS = [
    pytest.param("tf_saved_model", "", id="savedmodel", marks=NOT_TORCH),
    pytest.param("litert", ".tflite", id="tflite", marks=TF_ONLY),
    pytest.param("onnx", ".onnx", id="onnx", marks=TF_ONLY),
]


@pytest.fixture(scope="module", params=list(VARIANTS))
def trained(request):
    """A tiny UNet trained by `fit` on 64×64 images (so Keras alone would
    export it for 64×64 only)."""
    keras.utils.set_random_seed(0)
    kwargs = VARIANTS[request.param]
    model = seglayers.UNet(filters=4, depth=2, **kwargs)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 64, 64, 3)).astype("float32")
    classes = kwargs["num_classes"]
    masks = rng.integers(0, max(classes, 2), (4, 64, 64, 1))
    loss = "binary_crossentropy" if classes == 1 else "sparse_categorical_crossentropy"
    model.compile("adam", loss)
    model.fit(images, masks.astype("float32"), batch_size=2, epochs=1, verbose=0)
    return model


def _input_shape(path, format):
    """The input shape the exported file declares, `None` for any size."""
    if format == "tf_saved_model":
        import tensorflow as tf

        signature = tf.saved_model.load(path).signatures["serving_default"]
        (spec,) = signature.structured_input_signature[1].values()
        return tuple(spec.shape.as_list())
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        (details,) = Interpreter(model_path=path).get_input_details()
        return tuple(None if d == -1 else int(d) for d in details["shape_signature"])
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return tuple(
        d if isinstance(d, int) else None for d in session.get_inputs()[0].shape
    )


@pytest.mark.slow  # 5-10 s each, after a fit per variant
@pytest.mark.parametrize("format, suffix", FORMATS)
def test_export_serves_any_size_as_predict_does(trained, format, suffix, tmp_path):
    path = str(tmp_path / f"model{suffix}")
    trained.export(path, format=format, verbose=False)
    assert _input_shape(path, format) == (None, None, None, 3)
    serve = load_exported(path, format)
    rng = np.random.default_rng(1)
    for size in SIZES:
        images = rng.uniform(0, 1, (2, *size, 3)).astype("float32")
        expected = trained.predict(images, verbose=0)
        served = serve(images)
        assert served.shape == expected.shape
        np.testing.assert_allclose(served, expected, atol=1e-4, err_msg=str(size))
    _assert_no_plausible_scores(serve, rng.uniform(0, 1, (2, 3, 8, 3)), format)


@pytest.mark.parametrize("format, suffix", FORMATS[:1])
def test_an_explicit_input_signature_is_kept(format, suffix, tmp_path):
    model = seglayers.UNet(2, filters=4, depth=2)
    model(np.zeros((1, 32, 32, 3), "float32"))
    path = str(tmp_path / f"model{suffix}")
    signature = [keras.InputSpec(shape=(None, 32, 32, 3), dtype="float32")]
    model.export(path, format=format, verbose=False, input_signature=signature)
    assert _input_shape(path, format) == (None, 32, 32, 3)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch only")
@pytest.mark.parametrize("format", ["tf_saved_model", "onnx", "litert"])
def test_any_size_exports_from_pytorch_are_refused(format, tmp_path):
    # Keras failed deep in torch.export (a SavedModel for inputs of any size,
    # and ONNX traced on a 1x1 image), for plain Keras models too.
    model = seglayers.UNet(2, filters=4, depth=2)
    model.build((None, None, None, 3))
    with pytest.raises(ValueError, match=r"for inputs of any size from the PyTorch"):
        model.export(str(tmp_path / "m"), format=format, verbose=False)


def test_export_of_an_unbuilt_model_says_to_build_it(tmp_path):
    model = seglayers.UNet(2, filters=4, depth=2)
    with pytest.raises(ValueError, match=r"needs a built model.*built=False"):
        model.export(str(tmp_path / "m"), verbose=False)


def test_the_signature_has_the_channels_the_model_was_built_for():
    model = seglayers.UNet(2, filters=4, depth=2)
    model.build((None, None, None, 5))
    (spec,) = any_size_signature(model)
    assert tuple(spec.shape) == (None, None, None, 5)


@NOT_TORCH
def test_a_3d_unet_exports_for_volumes_of_any_size(tmp_path):
    # The default signature once had the rank of images, so every 3-D
    # model's export failed with its own input-shape error.
    model = seglayers.UNet(2, filters=4, depth=2, spatial_dims=3)
    model.build((None, None, None, None, 1))
    path = str(tmp_path / "volumes")
    model.export(path, verbose=False)
    assert _input_shape(path, "tf_saved_model") == (None, None, None, None, 1)
    serve = load_exported(path, "tf_saved_model")
    rng = np.random.default_rng(0)
    for size in [(16, 16, 16), (12, 20, 9)]:
        volumes = rng.uniform(0, 1, (1, *size, 1)).astype("float32")
        expected = model.predict(volumes, verbose=0)
        np.testing.assert_allclose(serve(volumes), expected, atol=1e-4)
    _assert_no_plausible_scores(serve, np.ones((1, 16, 3, 16, 1)), "tf_saved_model")


@pytest.mark.skipif(not ON_TF, reason="a TensorFlow graph of free sizes")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_graph_of_free_sizes_answers_nan_below_the_smallest_size(jit_compile):
    # The select itself, which a TensorFlow-written SavedModel on a CPU never
    # reaches (its oneDNN pooling fails first); a GPU, or XLA, reaches it.
    import tensorflow as tf

    from seglayers.models._checks import nan_when_too_small

    select = tf.function(
        lambda x: nan_when_too_small(x * 2.0, x, depth=2),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
        jit_compile=jit_compile,
    )
    served = select(np.ones((1, 4, 5, 3), "float32"))
    assert served.dtype == tf.float32
    np.testing.assert_array_equal(served, 2.0)
    for size in [(3, 5), (5, 3), (1, 1)]:
        assert np.isnan(select(np.ones((1, *size, 3), "float32"))).all(), size


def _assert_no_plausible_scores(serve, too_small, format):
    """An input below 2**depth along an axis, which the Keras model refuses,
    gets all-NaN scores from the served graph (it answered plausible
    probabilities), or an error where an operation cannot run at that size:
    TensorFlow's oneDNN pooling in a SavedModel ("could not create a
    descriptor for a pooling forward propagation primitive")."""
    too_small = too_small.astype("float32")
    try:
        served = serve(too_small)
    except Exception as error:
        assert ON_TF and format == "tf_saved_model", error
        assert "pooling" in str(error), error
        return
    assert served.shape[:-1] == too_small.shape[:-1]
    assert np.isnan(served).all()


@pytest.mark.parametrize(
    "policy, spatial_dims, format, match",
    [
        (
            "float32",
            3,
            "litert",
            r"^A model of volumes cannot be exported to TFLite: 3-D pooling "
            r"\(`MaxPool3D`, `AvgPool3D`\) is no built-in TFLite op.*"
            r"format='onnx' or "
            r"'tf_saved_model'\. Received: format='litert', spatial_dims=3$",
        ),
        (
            "mixed_bfloat16",
            2,
            "onnx",
            r"^A `mixed_bfloat16` model does not export to an ONNX file that runs: "
            r"ONNX has no bfloat16 convolutions\. Export a float32 copy.*"
            r"Received: dtype policy 'mixed_bfloat16'$",
        ),
        (
            "mixed_float16",
            2,
            "litert",
            r"^A `mixed_float16` model does not export to a TFLite file that runs: "
            r"TFLite has no float16 convolutions\.",
        ),
    ],
    ids=["tflite-volumes", "onnx-bfloat16", "tflite-float16"],
)
def test_exports_that_cannot_run_are_refused(policy, spatial_dims, format, match):
    # They failed in the converter with pages of MLIR (TFLite), or wrote an
    # ONNX file that ONNX Runtime refuses to load, reporting success.
    keras.config.set_dtype_policy(policy)
    model = seglayers.UNet(2, filters=4, depth=2, spatial_dims=spatial_dims)
    model.build((None,) * (spatial_dims + 1) + (1,))
    with pytest.raises(ValueError, match=match):
        export_arguments(model, format)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_models_take_and_export_float32_images(policy):
    # Cast to float16 before `rescale`, a 16-bit image's 65535 was infinite:
    # 900 of 1,024 output pixels were NaN for one saturated pixel.
    keras.config.set_dtype_policy(policy)
    model = seglayers.UNet(2, filters=4, depth=2, rescale=1 / 65535)
    images = np.random.default_rng(0).integers(0, 60000, (1, 32, 32, 1))
    images[0, 10, 10, 0] = 65535
    outputs = model.predict(images.astype("uint16"), verbose=0)
    assert outputs.dtype == np.float32 and np.isfinite(outputs).all()
    (spec,) = any_size_signature(model)
    assert spec.dtype == "float32"
    keras.config.set_dtype_policy("float32")
    full = seglayers.UNet(2, filters=4, depth=2, rescale=1 / 65535)
    full.build((None, None, None, 1))
    full.set_weights(model.get_weights())
    expected = full.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(outputs, expected, atol=0.02)


@pytest.mark.slow
@TF_ONLY
def test_a_float32_copy_of_a_bfloat16_model_exports_to_onnx(tmp_path):
    # The copy the refusal above describes.
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = seglayers.UNet(3, filters=4, depth=2, rescale=1 / 255)
    model.build((None, None, None, 3))
    copy = type(model).from_config({**model.get_config(), "dtype": "float32"})
    copy.build((None, None, None, model.input_channels))
    copy.set_weights(model.get_weights())
    path = str(tmp_path / "copy.onnx")
    copy.export(path, format="onnx", verbose=False)
    images = np.random.default_rng(0).uniform(0, 255, (1, 33, 47, 3))
    images = images.astype("float32")
    served = load_exported(path, "onnx")(images)
    np.testing.assert_allclose(served, copy.predict(images, verbose=0), atol=1e-4)
    np.testing.assert_allclose(served, model.predict(images, verbose=0), atol=0.05)


@TF_ONLY
def test_tflite_defaults_to_builtin_ops_only_and_keeps_a_given_target_spec():
    import tensorflow as tf

    model = seglayers.UNet(2, filters=4, depth=2)
    model.build((None, None, None, 3))
    _, kwargs = export_arguments(model, "litert")
    assert kwargs["target_spec"] == {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    given = {"supported_ops": [tf.lite.OpsSet.SELECT_TF_OPS]}
    _, kwargs = export_arguments(model, "litert", kwargs={"target_spec": given})
    assert kwargs["target_spec"] is given


@pytest.mark.parametrize("format, suffix", FORMATS)
def test_exported_files_are_served_only_batches_they_take(format, suffix, tmp_path):
    # LiteRT resized itself to an image without its batch axis and served
    # NaN; a complex batch lost its imaginary part; a wrong channel count
    # failed deep in each runtime.
    model = seglayers.UNet(2, filters=4, depth=2)
    model.build((None, None, None, 3))
    path = str(tmp_path / f"model{suffix}")
    model.export(path, format=format, verbose=False)
    serve = load_exported(path, format)
    image = np.random.default_rng(0).uniform(0, 1, (16, 24, 3)).astype("float32")
    shape = r"must be a batch of shape \(batch, height, width, 3\), as the exported"
    for images in (image, image[None, ..., :1], image[None, :0]):
        with pytest.raises(
            ValueError,
            match=shape + ".*images of shape " + re.escape(str(images.shape)),
        ):
            serve(images)
    with pytest.raises(TypeError, match=r"`images` must hold numbers.*complex64"):
        serve(image[None] * 1j)
    with pytest.raises(TypeError, match=r"Received: images=None of type NoneType"):
        serve(None)
    served = serve(image[None].tolist())  # nested lists are taken
    np.testing.assert_allclose(served, model.predict(image[None]), atol=1e-5)


@TF_ONLY
def test_the_litert_interpreter_runs_on_every_core_the_process_may_use(
    tmp_path, monkeypatch
):
    # LiteRT runs one thread unless told; TensorFlow and ONNX Runtime take
    # every core by default.
    from ai_edge_litert import interpreter

    threads = []

    class Recording(interpreter.Interpreter):
        def __init__(self, *args, num_threads=None, **kwargs):
            threads.append(num_threads)
            super().__init__(*args, num_threads=num_threads, **kwargs)

    monkeypatch.setattr(interpreter, "Interpreter", Recording)
    model = seglayers.UNet(2, filters=4, depth=2)
    model.build((None, None, None, 3))
    path = str(tmp_path / "model.tflite")
    model.export(path, format="litert", verbose=False)
    images = np.random.default_rng(0).uniform(0, 1, (1, 16, 24, 3))
    served = load_exported(path, "litert")(images.astype("float32"))
    if hasattr(os, "sched_getaffinity"):
        assert threads == [len(os.sched_getaffinity(0))]
    else:
        assert threads == [os.cpu_count()]
    np.testing.assert_allclose(served, model.predict(images, verbose=0), atol=1e-5)


def _onnx_head(path, shape, opset=17):
    """An ONNX file ending as tf2onnx's one-channel head sometimes does: an
    input `(batch, 1, height, width)` reshaped to `shape` (a `0` copies the
    input's axis), with that reshape's output as the graph's output."""
    import onnx
    from onnx import TensorProto, helper

    target = helper.make_tensor("shape", TensorProto.INT64, [len(shape)], shape)
    rank = len(shape)
    dims = [1] + [None] * (rank - 2) + [1] if rank == 5 else [None] * 3 + [1]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        initializer=[target],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)


@pytest.mark.parametrize("opset", [11, 17])
def test_restore_onnx_output_rank_squeezes_tf2onnx_leading_axis(tmp_path, opset):
    import onnx

    path = str(tmp_path / "head.onnx")
    _onnx_head(path, [1, -1, 0, 0, 1], opset)
    images = np.random.default_rng(0).uniform(size=(2, 1, 5, 7)).astype("float32")
    assert load_exported(path, "onnx")(images).shape == (1, 2, 5, 7, 1)
    assert restore_onnx_output_rank(path, rank=4)
    onnx.checker.check_model(onnx.load(path))
    served = load_exported(path, "onnx")(images)
    np.testing.assert_array_equal(served, images.transpose(0, 2, 3, 1))
    assert _input_shape(path, "onnx") == (None, 1, None, None)


def test_restore_onnx_output_rank_leaves_a_right_file_alone(tmp_path):
    path = tmp_path / "head.onnx"
    _onnx_head(str(path), [-1, 0, 0, 1])
    before = path.read_bytes()
    assert not restore_onnx_output_rank(str(path), rank=4)
    assert path.read_bytes() == before


@TF_ONLY
@pytest.mark.parametrize("spatial_dims, served", [(2, (2, 5, 7, 1)), (3, None)])
def test_export_restores_the_onnx_output_rank_of_the_model(
    tmp_path, monkeypatch, spatial_dims, served
):
    # tf2onnx leaves the stray axis in some runs only; a stand-in for Keras's
    # export writes it every time. A 3-D model's outputs have rank 5: kept.
    monkeypatch.setattr(
        keras.Model,
        "export",
        lambda self, path, **kwargs: _onnx_head(path, [1, -1, 0, 0, 1]),
    )
    model = seglayers.UNet(1, filters=4, depth=2, spatial_dims=spatial_dims)
    model.build((None,) * (spatial_dims + 1) + (3,))
    path = str(tmp_path / "m.onnx")
    model.export(path, format="onnx")
    images = np.zeros((2, 1, 5, 7), "float32")
    assert load_exported(path, "onnx")(images).shape == (served or (1, 2, 5, 7, 1))


@pytest.mark.xfail(strict=True, raises=AssertionError)
def test_plain_tf2onnx_insert_node_on_output_leaves_the_graph_output_behind():
    # The cause of `restore_onnx_output_rank` (tf2onnx 1.17): the reshape
    # optimizer adds its squeeze with `Graph.insert_node_on_output`, which
    # rewires the nodes that read a tensor but not the graph's outputs, so a
    # squeeze on an output is left dangling. When this passes, see whether
    # the repair is still needed (tf2onnx may also mend the optimizer).
    graph_module = pytest.importorskip("tf2onnx.graph")
    from onnx import TensorProto

    graph = graph_module.Graph([], opset=13)
    graph.add_graph_input("x", TensorProto.FLOAT, [1, 2])
    relu = graph.make_node("Relu", ["x"])
    graph.outputs = [relu.output[0]]
    squeeze = graph.make_node("Squeeze", [relu.output[0]])
    graph.insert_node_on_output(squeeze, relu.output[0])
    assert graph.outputs == [squeeze.output[0]]


def test_load_exported_names_the_formats():
    with pytest.raises(ValueError, match=r"Received: format='tflite'"):
        load_exported("model.tflite", "tflite")


@pytest.mark.skipif(not ON_JAX, reason="JAX's shape-polymorphic export only")
@pytest.mark.xfail(strict=True, raises=ValueError)
def test_plain_keras_jax_export_with_gradient_fails_at_any_size(tmp_path):
    # Why `export_arguments` saves no gradient on JAX: a pooling then a
    # stride-2 Conv2DTranspose at unknown height and width (JAX 0.10.2,
    # Keras 3.15.1) fails with "Expected cotangent type ... but got ...".
    # When this passes, the workaround can go.
    image = keras.Input((None, None, 3))
    x = keras.layers.MaxPooling2D()(image)
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(x)
    keras.Model(image, x).export(str(tmp_path / "plain"), verbose=False)
