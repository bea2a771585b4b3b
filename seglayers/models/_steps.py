"""What runs around Keras's `fit`, `evaluate` and `predict` (and their
`*_on_batch` forms) for every seglayers model: the data's shape checked
before any step, and a model that stays usable after a step fails.

Without a distribution strategy, Keras on TensorFlow builds the model, the
compiled metrics and the optimizer inside the first trace of the step's
`tf.function`. When that trace raises (masks of the wrong size, a wrong
`num_classes`), the variables created in it stay empty (shape (0,)) and the
cached function has had its first call. Fixing the data and calling again
then failed with "Creating variables on a non-first call to a function
decorated with tf.function", "OptionalFromValue ... list of length 0" or
"Input to reshape is a tensor with 0 values", and the model was lost. A plain
subclassed Keras model does the same (Keras 3.15.1, TensorFlow 2.21). So the
model is built eagerly from the data's shape before Keras traces (for a
generator or a `PyDataset`, the shape of its first batch), and the cached
step functions are dropped when a call raises: the next call traces afresh
and creates what the failed trace did not.

On JAX, Keras takes the values off the model's variables while a call runs
and puts them back at its end; a call that raised (a wrong mask in
`evaluate` after a `fit`, a bad batch mid-epoch) left the model without
weights, for good. They are put back (`_reattach`). keras-team/keras#21019
did so for an interrupted `fit`, not for `evaluate`, `predict` or a first
step that fails. `tests/models/upstream_test.py` shows both bugs on plain
Keras, as strict expected failures that pass the day Keras fixes them.
"""

import contextlib
import itertools
import types

import keras


def check_no_class_weight(model_name, class_weight, method="fit"):
    """`class_weight` weighs a sample by its one label, which a mask does
    not have: Keras fails deep inside with a TypeError."""
    if class_weight is not None:
        raise ValueError(
            f"{model_name}.{method} cannot use `class_weight`: Keras weighs "
            "whole samples by one label, and a mask has one per pixel. Weigh "
            "the classes in the loss (`DiceCrossEntropyLoss(class_weights={0: "
            "1.0, 1: 5.0, ...})`, also `DiceLoss` and `FocalLoss`) or pass "
            "per-pixel weights as `sample_weight` (`OneHotMask(num_classes)."
            "sample_weights(masks, class_weights)`). "
            f"Received: class_weight={class_weight}"
        )


@contextlib.contextmanager
def step_call(model, x, function, on_batch=False):
    """Around one `fit`, `evaluate`, `predict` or `*_on_batch` call of
    `model` on inputs `x` (see the module's docstring). `function` is the
    model's cached step function the call traces ("train_function",
    "test_function" or "predict_function"), dropped if the call raises; a
    call inside this one (a callback's `predict`) drops only its own.
    Yields the inputs to pass on: `x`, or a generator re-made after its
    first batch was read to build the model."""
    shape = _checked_array_shape(model, x)
    backend = keras.backend.backend()
    if not model.built and backend in ("tensorflow", "jax"):
        if shape is None:
            x, shape = _first_input_shape(x, read=backend == "tensorflow")
        _build(model, shape)
    values = entry = None
    if backend == "jax" and not on_batch:  # `*_on_batch` leaves the values.
        optimizer = getattr(model, "optimizer", None)
        if function == "train_function" and model.built and optimizer is not None:
            if not optimizer.built:  # As Keras would, inside the call.
                optimizer.build(model.trainable_variables)
        values, entry = _values(model), getattr(model, "_jax_state", None)
    try:
        yield x
    except BaseException:
        setattr(model, function, None)
        if values is not None:
            try:
                _reattach(model, values, entry)
            except Exception:  # Never hide the error that got here.
                pass
        raise


def _values(model):
    """(variable, value) for every variable of `model`, its metrics and its
    optimizer: references, not copies."""
    variables = list(model.variables) + list(model.metrics_variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        variables += list(optimizer.variables)
    unique = {id(v): v for v in variables}.values()
    return [(v, v.value) for v in unique if not _detached(v)]


def _detached(variable):
    # Keras's JAX trainer takes the values off the variables while it runs
    # (the step's state holds them) and puts them back at its end, or
    # when a callback asks (`jax_state_sync`).
    return getattr(variable, "_value", True) is None


def _reattach(model, values, entry):
    """After a JAX call raised: its variables had their values taken off
    and never put back (reading one raised "'NoneType' object is not
    callable", and the weights were lost). They get the last step's values
    where a step of this call ran (its `_jax_state`; not `entry`, one that
    an earlier `*_on_batch` call left), else those from before the call;
    values that are there (after a call inside this one, such as `fit`'s
    validation) are kept. Metrics built inside the call start from zero."""
    if getattr(model, "_jax_state", None) is not entry:
        model.jax_state_sync()
    model._jax_state = entry
    for variable, value in values:
        if _detached(variable):
            variable.assign(value)
    if any(_detached(v) for v in model.metrics_variables):
        model.reset_metrics()


def _checked_array_shape(model, x):
    """The shape of arrays `x`, checked before any step runs (`None` for a
    dataset or a generator). `call` checks every input too, but after calls
    at a few sizes TensorFlow traces the step with free sizes (and, after a
    wrong channel count, free channels), which `call` cannot check: a
    too-small input would fail deep in a pooling op instead (oneDNN's CPU
    kernels), or get all-NaN scores where the pooling runs
    (`_checks.nan_when_too_small`)."""
    if isinstance(x, dict):
        model._check_input_shape(x)  # Refused, by name.
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "dtype"):  # A dataset, a generator.
        return None
    shape = tuple(shape)
    if all(isinstance(size, int) for size in shape):
        model._check_input_shape(shape)
    return shape


def _first_input_shape(x, read):
    """`(x, shape)`: the input shape of data given as a `tf.data.Dataset`
    (from its element spec) or, where `read`, a `keras.utils.PyDataset`
    (its first batch) or a Python generator (its first batch, then `x`
    re-made to yield it again), of `(images, masks)` or of images; `None`
    where not known. (JAX's trainer builds the model from a first batch
    itself, outside the traced step: nothing to read there.)"""
    if read and isinstance(x, types.GeneratorType):
        first = list(itertools.islice(x, 1))
        x = _chained(first, x)
    elif read and isinstance(x, keras.utils.PyDataset):
        first = [x[0]]
    else:
        first = [getattr(x, "element_spec", None)]
    batch = first[0] if first else None
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    try:
        return x, tuple(batch.shape)
    except (AttributeError, TypeError, ValueError):  # No shape; unknown rank.
        return x, None


def _chained(first, rest):
    """A generator (Keras takes only `types.GeneratorType`) of `first`'s
    items, then `rest`'s. Through `itertools.chain`, which has no `close`:
    a `yield from rest` would close the caller's generator `rest` when Keras
    drops this one after the call, and a later `fit` on it found it empty."""
    yield from itertools.chain(first, rest)


def _build(model, shape):
    """Builds `model` for inputs of `shape` (the batch size left free), in
    its `tf.distribute` strategy's scope, where the channels are known."""
    if not shape or shape[-1] is None:
        return
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow's
    with strategy.scope() if strategy else contextlib.nullcontext():
        model.build((None, *shape[1:]))
