"""Exporting seglayers models for serving, at any height and width.

Keras's `Model.export` takes a subclassed model's input signature from the
shape it was first built or called with, so a `UNet` trained on 64×64
batches exports a SavedModel, TFLite or ONNX file that accepts only 64×64.
Every seglayers model is fully convolutional, so `UNet.export` asks for
`(None, None, None, channels)` instead, through `export_arguments`.

TensorFlow is imported here only for a TFLite export, the one that needs
its constants, and `onnx` only after an ONNX export.
"""

import keras

# `seglayers export --format` → `Model.export(format=...)`.
FORMATS = {"savedmodel": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}


def any_size_signature(model):
    """The input signature of any batch size, height and width (and depth,
    for a model of volumes): a list of one `keras.InputSpec((None, None,
    None, channels))`, or with the height and width of an encoder built for
    a fixed size."""
    if not model.built or model.input_channels is None:
        raise ValueError(
            f"`{type(model).__name__}.export` needs a built model, to know its "
            "input channels: train it, call it on a batch or call "
            "`model.build((None, None, None, channels))` first. "
            f"Received: a model with built={model.built}"
        )
    spatial = (None,) * getattr(model, "spatial_dims", 2)  # 3: volumes.
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        # An encoder built for one size (`input_shape=(224, 224, 3)`) takes
        # only that size; the signature says so instead of failing at serving.
        spatial = tuple(encoder.inputs[0].shape)[1:3]
    shape = (None, *spatial, model.input_channels)
    return [keras.InputSpec(shape=shape, dtype=model.input_dtype)]


def export_arguments(model, format, input_signature=None, kwargs=None):
    """`(input_signature, kwargs)` for `keras.Model.export`, with seglayers'
    defaults where the caller gave none.

    - `input_signature`: any batch size, height and width.
    - `format="tf_saved_model"` on JAX: no gradient in the SavedModel (see
      below).
    - `format="litert"` on TensorFlow: built-in TFLite ops only. Keras's
      default also allows TensorFlow ("Flex") ops, whose file then needs the
      Flex delegate to run; seglayers models need none, so a Flex op would
      only ever be a regression, and is better refused at conversion.
    """
    kwargs = dict(kwargs or {})
    if format in ("litert", "onnx"):
        _check_portable(model, format)
    if input_signature is None:
        input_signature = any_size_signature(model)
        _check_any_size_export(format, input_signature)
    if (
        format == "tf_saved_model"
        and keras.backend.backend() == "jax"
        and "jax2tf_kwargs" not in kwargs
    ):
        # JAX 0.10.2 (Keras 3.15.1's jax2tf export): with unknown height and
        # width, the gradient of a stride-2 `Conv2DTranspose` after a pooling
        # comes out with a symbolic shape JAX does not see as equal to the
        # forward one ("Expected cotangent type float32[batch,floordiv(a - 2,
        # 2) + 1,...] but got ..."), and writing the SavedModel fails.
        # Serving needs no gradient, so none is saved.
        kwargs["jax2tf_kwargs"] = {"with_gradient": False}
    if (
        format == "litert"
        and keras.backend.backend() == "tensorflow"
        and "target_spec" not in kwargs
    ):
        import tensorflow as tf

        kwargs["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    return input_signature, kwargs


def _check_any_size_export(format, signature):
    """Refuses the exports Keras 3.15.1 cannot make from PyTorch for inputs
    of any size, where it would fail deep inside `torch.export`: a SavedModel
    ("Detected mismatch between the structure of `inputs` and
    `dynamic_shapes`", and torch_xla after that), and the others, traced on
    a 1×1 image, too small for any pooling. Plain Keras models fail alike.
    An encoder built for one size has a signature of that size: let through.
    """
    free = any(size is None for size in signature[0].shape[1:-1])
    if keras.backend.backend() != "torch" or not free:
        return
    raise ValueError(
        f"Keras cannot export format={format!r} for inputs of any size from the "
        "PyTorch backend. Save the model (`model.save('model.keras')`) and "
        "export it on TensorFlow (`KERAS_BACKEND=tensorflow seglayers export "
        "model.keras OUT`), or pass an `input_signature` of one size. "
        f"Received: format={format!r} on the {keras.backend.backend()} backend"
    )


def _check_portable(model, format):
    """Refuses what converts to a TFLite or ONNX file that cannot run, or
    fails in the converter with pages of MLIR: TFLite has no built-in 3-D
    pooling, and neither TFLite's built-in ops nor ONNX Runtime's CPU
    convolutions take bfloat16 (nor TFLite's, float16)."""
    name, a_file = {
        "litert": ("TFLite", "a TFLite file"),
        "onnx": ("ONNX", "an ONNX file"),
    }[format]
    spatial_dims = getattr(model, "spatial_dims", 2)
    if format == "litert" and spatial_dims == 3:
        raise ValueError(
            "A model of volumes cannot be exported to TFLite: 3-D pooling "
            "(`MaxPool3D`, `AvgPool3D`) is no built-in TFLite op, and the "
            "TensorFlow op it would need instead (a Flex op, also with a "
            "`target_spec` that allows them) does not run in the LiteRT "
            "interpreter. Export "
            "it with format='onnx' or 'tf_saved_model'. "
            f"Received: format='litert', spatial_dims={spatial_dims}"
        )
    policy = model.dtype_policy.name
    compute = model.dtype_policy.compute_dtype
    if compute == "bfloat16" or (compute != "float32" and format == "litert"):
        raise ValueError(
            f"A `{policy}` model does not export to {a_file} that runs: "
            f"{name} has no {compute} convolutions. Export a float32 copy with "
            "the same weights: `copy = type(model).from_config({**model."
            "get_config(), 'dtype': 'float32'})`, `copy.build((None, None, "
            "None, model.input_channels))` (one more None for volumes), "
            "`copy.set_weights(model.get_weights())`, then `copy.export(...)`. "
            f"Received: dtype policy {policy!r}"
        )


def restore_onnx_output_rank(path, rank):
    """Squeezes the leading axis of length 1 that tf2onnx sometimes leaves on
    an output of the ONNX file at `path`, so that every output has `rank`
    axes, as the model's own. Returns whether the file was rewritten.

    Works around tf2onnx 1.17 (Keras 3.15.1's ONNX export on TensorFlow).
    A one-channel head exported at any size ends in a transpose of
    `(batch, 1, height, width)` to channels-last, which tf2onnx turns into a
    reshape whose target shape is computed at run time. Its
    `ReshapeOptimizer` then rewrites that reshape as one to
    `(1, batch, height, width, 1)` followed by a squeeze of the leading
    axis, and adds the squeeze with `Graph.insert_node_on_output`, which
    rewires the reshape's consumer nodes but not the graph's outputs. When
    the optimizer passes reach the reshape only after the output `Identity`
    was removed (in some runs, not all), the squeeze is left unconnected
    and the file serves `(1, batch, height, width, 1)`. Only that shape is
    touched: an output with one axis too many, of length 1 first, made by a
    `Reshape`.
    """
    import onnx

    model = onnx.load(path)
    graph = model.graph
    opset = next(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13
    )
    rewritten = False
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) != rank + 1 or dims[0].dim_value != 1:
            continue
        producers = [i for i, n in enumerate(graph.node) if output.name in n.output]
        if len(producers) != 1 or graph.node[producers[0]].op_type != "Reshape":
            continue
        producer = graph.node[producers[0]]
        inner = f"{output.name}_with_leading_axis"
        producer.output[list(producer.output).index(output.name)] = inner
        if opset >= 13:  # `axes` became an input in opset 13.
            axes = onnx.helper.make_tensor(
                f"{inner}_axes", onnx.TensorProto.INT64, [1], [0]
            )
            graph.initializer.append(axes)
            squeeze = onnx.helper.make_node(
                "Squeeze", [inner, axes.name], [output.name]
            )
        else:
            squeeze = onnx.helper.make_node("Squeeze", [inner], [output.name], axes=[0])
        # Right after the reshape: nodes stay in topological order.
        graph.node.insert(producers[0] + 1, squeeze)
        del dims[0]
        rewritten = True
    if rewritten:
        onnx.save(model, path)
    return rewritten


def _batch(images, declared):
    """`images` as the float32 batch an exported file takes, whose input
    shape is `declared` (`None` for any size); refused by name where the
    runtime would serve garbage (LiteRT resized itself to an image without
    its batch axis and answered NaN), drop an imaginary part, or fail deep
    inside (a channel count the file does not take)."""
    from seglayers.inference._checks import check_number_dtype, image_array

    images = image_array(images, "images")
    check_number_dtype(images, "`images`")
    fits = images.ndim == len(declared) and all(
        size >= 1 and want in (None, size) for size, want in zip(images.shape, declared)
    )
    if not fits:
        names = ["batch", "height", "width"]
        if len(declared) == 5:
            names.insert(1, "depth")
        axes = [
            name if want is None else str(want)
            for name, want in zip(names + ["channels"], declared)
        ]
        raise ValueError(
            f"`images` must be a batch of shape ({', '.join(axes)}), as the "
            "exported file takes, with no empty axis (one image: `image[None]`). "
            f"Received: images of shape {images.shape}"
        )
    return images.astype("float32", copy=False)


def _cores():
    """The cores this process may run on: its CPU affinity where the OS
    tells it (a container pinned to some cores), else the machine's."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_exported(path, format):
    """A function from a NumPy batch to the NumPy predictions of the file
    `model.export(path, format=format)` wrote, run by that format's own
    runtime, without Keras or seglayers: a SavedModel's `serve` endpoint
    (TensorFlow), the LiteRT interpreter (`ai-edge-litert`) or ONNX Runtime.
    For checking an export against `model.predict`, and for timing it.
    Each runtime uses every core this process may run on: TensorFlow and
    ONNX Runtime do by default, and the LiteRT interpreter is asked to (it
    runs one thread unless told; two threads served a 256² `UNet(2,
    filters=16)` in 34 ms against 47 ms on 2 cores).

    Args:
        path: str, the exported SavedModel folder, `.tflite` or `.onnx` file.
        format: `"tf_saved_model"`, `"litert"` or `"onnx"`, as given to
            `export`.
    """
    if format == "tf_saved_model":
        import tensorflow as tf

        # The loaded object owns the variables: keep it, not just `serve`.
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
        (spec,) = signature.structured_input_signature[1].values()
        declared = spec.shape.as_list()
        return lambda images: loaded.serve(_batch(images, declared)).numpy()
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path, num_threads=_cores())
        interpreter.allocate_tensors()
        (inputs,) = interpreter.get_input_details()
        (outputs,) = interpreter.get_output_details()
        declared = [None if d == -1 else int(d) for d in inputs["shape_signature"]]

        def run(images):
            images = _batch(images, declared)
            # An any-size model: size the tensors for a new shape.
            if tuple(interpreter.get_input_details()[0]["shape"]) != images.shape:
                interpreter.resize_tensor_input(inputs["index"], images.shape)
                interpreter.allocate_tensors()
            interpreter.set_tensor(inputs["index"], images)
            interpreter.invoke()
            return interpreter.get_tensor(outputs["index"])

        return run
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        (spec,) = session.get_inputs()
        declared = [d if isinstance(d, int) else None for d in spec.shape]

        def run(images):
            return session.run(None, {spec.name: _batch(images, declared)})[0]

        return run
    raise ValueError(
        '`format` must be "tf_saved_model", "litert" or "onnx", as given to '
        f"`export`. Received: format={format!r}"
    )
