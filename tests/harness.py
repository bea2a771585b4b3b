"""One test harness for every public layer and model.

`run_layer_test` checks, for one layer configuration: the config round trip
(on the revived object), a symbolic and a concrete call (`call`: eager, and
jitted on JAX) against the expected shape, that no weight is made after
`build`, one training step, the call under mixed precision, and a `.keras`
save → load in the same outputs.
`load_in_fresh_process` checks that a saved model loads in a new Python
process that only imported `seglayers`, on any backend.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

# Keras 3.15's PyTorch backend computes `sparse_categorical_crossentropy` of
# probabilities (a softmax output, `from_logits=False`) by moving the class
# axis with `movedim` and passing that non-contiguous view to
# `torch.nn.functional.nll_loss`, whose CPU backward (torch 2.13) raises
# "grad_input must be contiguous" -- for any model, e.g. one
# `Conv2D(3, 1, activation="softmax")`. Logits take `cross_entropy` and
# train, and so do seglayers' own losses. Tests that train a softmax output
# with Keras's loss are expected to fail there, and only there.
TORCH_SOFTMAX_SCCE = pytest.mark.xfail(
    keras.backend.backend() == "torch",
    raises=RuntimeError,
    strict=True,
    reason="Keras torch backend: sparse_categorical_crossentropy on "
    "probabilities fails in backward ('grad_input must be contiguous')",
)

# Keras's PyTorch backend runs `fit` and `evaluate` eagerly unless
# `jit_compile=True`, so inputs that a traced step (TensorFlow, JAX) counts
# out of range or turns to NaN raise the eager `ValueError` there instead,
# which the eager tests check on every backend.
TRACED_STEP = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="PyTorch's fit and evaluate run eagerly: bad inputs raise the eager "
    "ValueError instead",
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_inputs(shapes, seed=0):
    """Random float32 arrays for a shape or a list of shapes."""
    rng = np.random.default_rng(seed)
    if isinstance(shapes, list):
        return [random_inputs(s, seed + i) for i, s in enumerate(shapes)]
    return rng.uniform(-1, 1, size=shapes).astype("float32")


def call(layer, inputs, **kwargs):
    """`layer(inputs, **kwargs)` on concrete inputs: eagerly, and on JAX
    inside `jax.jit`, statelessly (state updates, such as a batch norm's
    moving statistics, come out as values and are then assigned).

    Eager JAX compiles each op on its own at every new shape or dtype (about
    30 ms each): the FPN harness's first call took 5.6 s eagerly and 0.4 s
    traced. Traced, the layer runs the same `__call__` (input casting under
    mixed precision included) under stricter rules (no Python branch on a
    tensor's value), so no check is lost. An unbuilt layer is built first
    from the inputs' shapes, as an eager first call builds it, outside the
    trace.
    """
    if keras.backend.backend() != "jax":
        return layer(inputs, **kwargs)
    import jax

    if not layer.built:
        shapes = [tuple(x.shape) for x in _as_list(inputs)]
        layer.build(shapes if isinstance(inputs, list) else shapes[0])
    variables = layer.trainable_variables + layer.non_trainable_variables

    def stateless(values, x):
        # What `Layer.stateless_call` does, but through `__call__`:
        # `stateless_call` calls `call` directly, skipping the casting.
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            outputs = layer(x, **kwargs)
        updated = [scope.get_current_value(v) for v in variables]
        return outputs, [v if u is None else u for v, u in zip(values, updated)]

    outputs, values = jax.jit(stateless)([v.value for v in variables], inputs)
    for variable, value in zip(variables, values):
        variable.assign(value)
    return outputs


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _check_config(layer_cls, init_kwargs):
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    json.dumps(config)  # plain JSON types only
    parameters = inspect.signature(layer_cls.__init__).parameters
    for name, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if name == "self":
            continue
        assert name in config, f"get_config() lacks the argument {name!r}"
    revived = layer_cls.from_config(config)
    assert type(revived) is layer_cls
    assert revived.get_config() == config
    for name, value in init_kwargs.items():
        assert revived.get_config()[name] == value, name
    registered = keras.saving.get_registered_name(layer_cls)
    assert registered == f"seglayers>{layer_cls.__name__}", registered


def _functional_model(layer, input_shapes):
    inputs = [keras.Input(shape[1:], batch_size=shape[0]) for shape in input_shapes]
    inputs = inputs if len(inputs) > 1 else inputs[0]
    return keras.Model(inputs, layer(inputs))


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape):
    """Runs every generic check on `layer_cls(**init_kwargs)`.

    `input_shape` is one shape or a list of shapes (for `[x, skip]`-style
    inputs), with a concrete batch size; `expected_output_shape` one shape
    or a tuple of shapes.
    """
    input_shapes = input_shape if isinstance(input_shape, list) else [input_shape]
    expected = (
        list(expected_output_shape)
        if isinstance(expected_output_shape[0], tuple)
        else [expected_output_shape]
    )
    data = random_inputs(list(input_shapes))
    call_input = data if len(data) > 1 else data[0]

    _check_config(layer_cls, init_kwargs)

    # Symbolic call, with every spatial size unknown too (any rank).
    layer = layer_cls(**init_kwargs)
    symbolic = [
        keras.Input((None,) * (len(shape) - 2) + (shape[-1],), batch_size=shape[0])
        for shape in input_shapes
    ]
    outputs = _as_list(layer(symbolic if len(symbolic) > 1 else symbolic[0]))
    for output, shape in zip(outputs, expected):
        spatial = (None,) * (len(shape) - 2)
        assert tuple(output.shape) == (shape[0], *spatial, shape[-1])

    # build() makes every weight; calls make none; shapes agree.
    layer = layer_cls(**init_kwargs)
    layer.build(input_shape)
    num_weights = len(layer.weights)
    computed = layer.compute_output_shape(input_shape)
    computed = list(computed) if isinstance(computed[0], tuple) else [computed]
    assert [tuple(s) for s in computed] == expected
    outputs = _as_list(call(layer, call_input))
    assert [tuple(o.shape) for o in outputs] == expected
    call(layer, call_input, **({"training": True} if _takes_training(layer) else {}))
    assert len(layer.weights) == num_weights, "a call created weights"

    # One training step moves the trainable weights and stays finite.
    layer = layer_cls(**init_kwargs)
    model = _functional_model(layer, input_shapes)
    model = keras.Model(model.inputs, _as_list(model.outputs)[0])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    target = np.ones(expected[0], "float32")
    history = model.fit(data, target, batch_size=input_shapes[0][0], verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    assert any(not np.allclose(b, a) for b, a in zip(before, after))

    # Mixed precision: computes in the half type, stays finite.
    for policy, half in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
        keras.config.set_dtype_policy(policy)
        try:
            layer = layer_cls(**init_kwargs)
            outputs = _as_list(call(layer, call_input))
            for output in outputs:
                assert keras.backend.standardize_dtype(output.dtype) == half
                assert np.all(np.isfinite(keras.ops.convert_to_numpy(output)))
        finally:
            keras.config.set_dtype_policy("float32")

    # .keras round trip inside a model: same outputs after loading.
    layer = layer_cls(**init_kwargs)
    model = _functional_model(layer, input_shapes)
    assert_saved_model_predicts_the_same(model, call_input)


def _takes_training(layer):
    return "training" in inspect.signature(layer.call).parameters


def assert_saved_model_predicts_the_same(model, inputs, tmp_dir=None):
    """`model.save` then `load_model(safe_mode=True)` → identical outputs."""
    import tempfile

    expected = _as_list(model.predict(inputs, verbose=0))
    with tempfile.TemporaryDirectory(dir=tmp_dir) as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    actual = _as_list(loaded.predict(inputs, verbose=0))
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a, e, atol=1e-6)
    return loaded


_FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import importlib
    import seglayers  # the only import a user needs before loading

    model_path, inputs_path, outputs_path, *modules = sys.argv[1:]
    for module in modules:  # where a model defined outside seglayers lives
        importlib.import_module(module)
    model = keras.saving.load_model(model_path, safe_mode=True)
    outputs = model.predict(np.load(inputs_path), verbose=0)
    np.save(outputs_path, outputs)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "class": type(model).__name__,
        "compile_config": model.get_compile_config(),
        "optimizer": model.optimizer.get_config() if model.optimizer else None,
        "iterations": int(model.optimizer.iterations.numpy()
                          if hasattr(model.optimizer.iterations, "numpy")
                          else keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }, default=str))
    """
)


def run_in_fresh_process(script, args, backend=None, timeout=300):
    """Runs a Python `script` in a new process; returns its stdout."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = PROJECT_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def load_in_fresh_process(model_path, inputs, tmp_path, backend=None, modules=()):
    """Loads `model_path` in a new process that only imported seglayers.

    Returns the outputs it predicts for `inputs` and what it reports of the
    compiled state (loss, metrics, optimizer).
    """
    inputs_path = str(tmp_path / "inputs.npy")
    outputs_path = str(tmp_path / "outputs.npy")
    np.save(inputs_path, inputs)
    stdout = run_in_fresh_process(
        _FRESH_PROCESS_SCRIPT,
        [str(model_path), inputs_path, outputs_path, *modules],
        backend=backend,
    )
    report = json.loads(stdout.strip().splitlines()[-1])
    return np.load(outputs_path), report


# === Models ===


def tiny_encoder():
    """Five stride-2 convolutions: features at strides 2 to 32."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for width in (4, 4, 8, 8, 8):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, x, name="tiny_encoder")


_OTHER_BACKEND = {"tensorflow": "jax", "jax": "tensorflow", "torch": "tensorflow"}


def _check_model_config(model_cls, init_kwargs):
    """Config complete, JSON, revived into an equal config and registered;
    keyword values kept (an encoder comes back serialized, not as given)."""
    model = model_cls(**init_kwargs)
    config = model.get_config()
    json.dumps(config)
    parameters = inspect.signature(model_cls.__init__).parameters
    for name, parameter in parameters.items():
        if name != "self" and parameter.kind not in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
        ):
            assert name in config, f"get_config() lacks the argument {name!r}"
    revived = model_cls.from_config(config)
    assert type(revived) is model_cls
    assert revived.get_config() == config
    for name, value in init_kwargs.items():
        if name != "encoder":
            assert config[name] == value, name
    # Registered: under "seglayers>" for ours, a user's own package for theirs.
    registered = keras.saving.get_registered_name(model_cls)
    assert registered.endswith(f">{model_cls.__name__}"), registered


def _train_step(model, inputs, jit_compile=None):
    """Compiles `model` with a seglayers loss, fits one batch; returns the
    loss. `jit_compile` defaults to False on TensorFlow (a `tf.function`
    graph) and True on JAX, where False would run the step op by op,
    compiling each of a thousand ops on its own (25 s for the UNet harness's
    step, 5 s jitted): users of JAX train jitted."""
    from seglayers import DiceCrossEntropyLoss

    if jit_compile is None:
        jit_compile = keras.backend.backend() == "jax"
    num_classes = model.num_classes
    rng = np.random.default_rng(1)
    targets = rng.integers(0, max(num_classes, 2), size=inputs.shape[:-1] + (1,))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=DiceCrossEntropyLoss(from_logits=model.output_activation is None),
        jit_compile=jit_compile,
    )
    history = model.fit(inputs, targets, batch_size=len(inputs), verbose=0)
    return history.history["loss"][0]


def run_model_test(
    model_cls,
    init_kwargs,
    input_shape,
    tmp_path,
    cross_backend=True,
    modules=(),
    light=False,
    mixed_training=False,
):
    """Runs every generic check on a `SegmentationModel` subclass.

    `input_shape` is `(batch, *spatial, channels)` with concrete sizes, at
    least twice the smallest the model takes (`2**model.depth`), 2-D or 3-D.
    Checks: the config round trip; symbolic calls with free sizes; `build`
    makes every weight; output shapes at the given and at odd sizes; the
    too-small error; one training step that moves every trainable weight;
    `jit_compile=True` against eager; `mixed_float16` and `mixed_bfloat16`
    (float32 outputs; with `mixed_training`, a `mixed_float16` training
    step too: the base's float32 head and the losses are the same for
    every model, so one model's test covers loss scaling); `.keras` load
    under `safe_mode` in this process and in a fresh process that only
    imported seglayers, on another backend with `cross_backend` (the
    optimizer state and compile config come back too), with the same
    predictions. (A model's first configuration should keep
    `cross_backend`; a JAX process spends most of a minute compiling.)
    `modules` are imported by the fresh process: where a model defined
    outside seglayers is registered.

    Each model runs the whole battery once; its further configurations
    pass `light=True`: the checks up to the too-small error, a
    mixed-precision call, and a `.keras` round trip in this process,
    without compiling anything (the suite stays fast on 2 cores).
    """
    batch, *spatial, channels = input_shape
    _check_model_config(model_cls, init_kwargs)
    inputs = random_inputs(tuple(input_shape))

    # Symbolic call with every spatial size free.
    model = model_cls(**init_kwargs)
    free = (None,) * len(spatial)
    symbolic = model(keras.Input(free + (channels,), batch_size=batch))
    assert tuple(symbolic.shape) == (batch, *free, model.num_classes)

    # build() makes every weight; calls at any size make none.
    model = model_cls(**init_kwargs)
    model.build((None, *free, channels))
    num_weights = len(model.weights)
    expected = (batch, *spatial, model.num_classes)
    assert tuple(model.compute_output_shape(input_shape)) == expected
    assert tuple(call(model, inputs).shape) == expected
    odd = [size + 1 if size % 2 == 0 else size for size in spatial]
    odd_inputs = random_inputs((1, *odd, channels))
    assert tuple(call(model, odd_inputs).shape) == (1, *odd, model.num_classes)
    assert len(model.weights) == num_weights, "a call created weights"

    # Too small: the error names the smallest size.
    minimum = 2**model.depth
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        model(random_inputs((1, *[minimum - 1] * len(spatial), channels)))

    if light:
        _light_checks(model, model_cls, init_kwargs, inputs, tmp_path)
        return

    # One training step moves every trainable weight, finitely.
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert np.isfinite(_train_step(model, inputs))
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    unmoved = [
        w.path
        for w, b, a in zip(model.trainable_weights, before, after)
        if np.array_equal(b, a)
    ]
    assert not unmoved, f"weights a training step did not change: {unmoved}"

    # XLA (on JAX the step above was already compiled by XLA): the same
    # predictions, and a compiled training step.
    if keras.backend.backend() != "jax":
        compiled = model_cls.from_config(model.get_config())
        compiled.build((None, *free, channels))
        compiled.set_weights(model.get_weights())
        expected_outputs = model.predict(inputs, verbose=0)
        compiled.compile(jit_compile=True)
        # XLA fuses and reorders float32 sums: round-off only.
        np.testing.assert_allclose(
            compiled.predict(inputs, verbose=0), expected_outputs, rtol=1e-4, atol=1e-4
        )
        assert np.isfinite(_train_step(compiled, inputs, jit_compile=True))

    # Mixed precision: half-precision blocks, a float32 head and output;
    # float16 also trains (with loss scaling).
    for policy in ("mixed_float16", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        try:
            half = model_cls(**init_kwargs)
            if policy == "mixed_float16" and mixed_training:
                assert np.isfinite(_train_step(half, inputs))
            outputs = call(half, inputs)
            assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
            assert half.head.compute_dtype == "float32"
            assert np.isfinite(keras.ops.convert_to_numpy(outputs)).all()
        finally:
            keras.config.set_dtype_policy("float32")

    # .keras under safe_mode: in this process, exactly; then in a fresh
    # process that only imported seglayers (on the other backend with
    # `cross_backend`: other convolution kernels, float32 round-off only).
    path = tmp_path / f"{model_cls.__name__}.keras"
    _assert_loads_in_process(model, path, inputs)
    expected_outputs = model.predict(inputs, verbose=0)
    backend = _OTHER_BACKEND[keras.backend.backend()] if cross_backend else None
    outputs, report = load_in_fresh_process(
        path, inputs, tmp_path, backend=backend, modules=modules
    )
    assert report["class"] == model_cls.__name__
    assert report["iterations"] == 1  # the optimizer's state came along
    compile_config = json.loads(json.dumps(model.get_compile_config(), default=str))
    assert report["compile_config"] == compile_config
    tolerance = 1e-4 if cross_backend else 1e-6
    np.testing.assert_allclose(
        outputs, expected_outputs, rtol=tolerance, atol=tolerance
    )


def _light_checks(model, model_cls, init_kwargs, inputs, tmp_path):
    """Mixed precision and an in-process `.keras` round trip, without
    compiling a training step (`call` jits the forward pass on JAX)."""
    for policy in ("mixed_float16", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        try:
            outputs = call(model_cls(**init_kwargs), inputs)
            assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
            assert np.isfinite(keras.ops.convert_to_numpy(outputs)).all()
        finally:
            keras.config.set_dtype_policy("float32")
    _assert_loads_in_process(
        model, tmp_path / f"{model_cls.__name__}_light.keras", inputs
    )


def _assert_loads_in_process(model, path, inputs):
    """Saves `model` to `path`; loaded under `safe_mode`, it is the same
    class and predicts the same."""
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(call(loaded, inputs)),
        keras.ops.convert_to_numpy(call(model, inputs)),
        atol=1e-6,
    )
