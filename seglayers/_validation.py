"""Argument checks shared by the public classes.

Every message names the argument, says what was expected and how to fix it,
and ends with `Received: name=value`, as Keras's own errors do.
"""

import math
import numbers

import keras
import numpy as np


def _fmt(choices):
    shown = [repr(c) for c in choices]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, else raises `ValueError`.

    An int choice is matched by ints only: a numpy integer comes back as the
    Python int (so that configs stay JSON), and a float such as 16.0, equal
    to 16 but no int to compute with, raises `TypeError`. Callers use the
    returned value.
    """
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {_fmt(choices)}. Received: {name}={value!r}"
        )
    choice = next(c for c in choices if c == value)
    if not is_int(choice) or isinstance(value, (bool, np.bool_)):
        return value  # Strings, None and bools as before (verbose=True is 1).
    if isinstance(value, numbers.Integral):
        return int(value)
    raise TypeError(
        f"`{name}` must be one of {_fmt(choices)}, an int, not "
        f"{type(value).__name__}; pass {name}={choice!r}. "
        f"Received: {name}={value!r}"
    )


def is_int(value):
    """True for Python and numpy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )


def is_real(value):
    """True for Python and numpy numbers (`np.float32(0.5)` too), not for
    bools or complex numbers."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_python_number(value):
    """`value` as it is if a Python int or float, else as a Python float (a
    numpy number, kept out of configs)."""
    return value if type(value) in (int, float) else float(value)


def check_seed(name, value):
    """`value` as a Python int if it is an int >= 0 (numpy integers too), or
    `None`; else raises with the argument's name, where numpy's own errors
    ("SeedSequence expects int") name none."""
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(
            f"`{name}` must be a non-negative int (or None), e.g. {name}=0. "
            f"Received: {name}={value!r}"
        )
    if value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative int (or None), e.g. {name}=0. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_spatial_dims(value):
    """`value` as a Python int if it is 2 (images) or 3 (volumes), a numpy
    integer too (as `check_choice` takes one); else raises `ValueError`, for
    2.0 too."""
    if not is_int(value) or value not in (2, 3):
        raise ValueError(
            "`spatial_dims` must be 2, for images (batch, height, width, "
            "channels), or 3, for volumes (batch, depth, height, width, "
            f"channels); pass the int. Received: spatial_dims={value!r}"
        )
    return int(value)


def check_positive_int(name, value):
    """`value` as a Python int if it is an int >= 1 (not a bool), else
    raises. Numpy integers (`masks.max() + 1`) are ints too: they come back
    as Python ints, which configs keep as JSON numbers. Callers use the
    returned value."""
    if not is_int(value):
        raise TypeError(
            f"`{name}` must be a positive integer. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer (1 or more). "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_rate(name, value):
    """Returns `value` as a Python float if it is a number in [0, 1) (numpy
    ones too), else raises. Callers use the returned value."""
    if not is_real(value):
        raise TypeError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1), e.g. 0.1. Received: {name}={value!r}"
        )
    return float(value)


def check_activation(name, value):
    """Returns `value` if Keras knows it as an activation name."""
    if not isinstance(value, str):
        raise TypeError(
            f"`{name}` must be the name of a Keras activation such as 'relu' "
            "(a string, so that the model can be saved). "
            f"Received: {name}={value!r}"
        )
    try:
        keras.activations.get(value)
    except ValueError:
        raise ValueError(
            f"`{name}` must be the name of a Keras activation such as 'relu', "
            f"'gelu' or 'silu'. Received: {name}={value!r}"
        ) from None
    return value


def check_bool(name, value):
    """Returns `value` as a Python bool if it is a bool (numpy's too, as
    numpy ints are taken as ints), else raises `TypeError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_ignore_class(value):
    """`value` as a Python int if it is an int class id (numpy integers
    too), or None; else raises."""
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(
            "`ignore_class` must be an int class id such as 255, or None. "
            f"Received: ignore_class={value!r}"
        )
    if not -(2**31) <= value < 2**31:
        # Masks are compared and returned as int32 ids: a larger id would
        # wrap (2**32 to 0, ignored voxels read as background).
        raise ValueError(
            "`ignore_class` must fit in int32, the dtype of the ids seglayers "
            "compares and returns, e.g. 255 or -1. "
            f"Received: ignore_class={value!r}"
        )
    return int(value)


def check_ignore_not_a_class(ignore_class, num_classes):
    """Raises if `ignore_class` is also a class id: that class would be
    dropped from training and from every count without a word."""
    classes = max(num_classes, 2)  # One sigmoid channel: ids 0 and 1.
    if ignore_class is not None and 0 <= ignore_class < classes:
        raise ValueError(
            f"`ignore_class`={ignore_class} is also a class id (ids run over "
            f"[0, {classes}) for num_classes={num_classes}), so that class would "
            "never be learned or counted. Set `ignore_class` to the id of "
            "unlabelled pixels only, outside the class ids (often 255). "
            f"Received: ignore_class={ignore_class}, num_classes={num_classes}"
        )
    return ignore_class


def concrete_value(tensor):
    """`tensor` as a numpy array when it holds values (eager), else `None`.

    Inside a traced function (`tf.function`, `jax.jit`, `fit`) there are no
    values to check; callers then turn bad input into NaN instead of raising.
    """
    try:
        return keras.ops.convert_to_numpy(tensor)
    except Exception:  # A symbolic tf.Tensor or a JAX tracer: traced code.
        return None


def holds_numbers(dtype):
    """Whether `dtype` (numpy's, or a TensorFlow, JAX or PyTorch one) holds
    numbers: bools, integers or real floats (not complex, text or objects,
    which a cast would mangle or refuse deep inside)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf" or dtype.name == "bfloat16"
    name = dtype_name(dtype)
    return name == "bool" or name.startswith(("int", "uint", "float", "bfloat"))


def dtype_name(dtype):
    """Keras's name of `dtype` ("string"), or numpy's where Keras has none."""
    try:
        return keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError):
        return str(dtype)


def check_sample_weight(sample_weight, pixels):
    """`sample_weight` broadcast to `pixels`'s shape `(batch, ..., H, W)`.

    Accepts one weight per sample `(batch,)`, per pixel `(batch, ..., H, W)`
    or `(batch, ..., H, W, 1)`, or anything in between (leading axes line
    up, as in Keras). Keras's own `broadcast_to` lines up trailing axes, which
    would read a `(batch,)` weight as one weight per column.
    """
    ops = keras.ops
    dtype = getattr(sample_weight, "dtype", None)
    if dtype is None:
        dtype = np.asarray(sample_weight).dtype
    if not holds_numbers(dtype):
        raise TypeError(
            "`sample_weight` must hold numbers (floats, integers or bools), "
            "one per sample or pixel: convert it, e.g. with .astype('float32'). "
            f"Received: sample_weight of dtype {dtype_name(dtype)}"
        )
    weight = ops.convert_to_tensor(sample_weight)
    if keras.backend.standardize_dtype(weight.dtype) == "bool":
        # Keep (1) or leave out (0); TensorFlow cannot compare bools with 0.
        weight = ops.cast(weight, "float32")
    received = tuple(weight.shape)
    rank, shape = len(pixels.shape), tuple(pixels.shape)
    if len(weight.shape) == rank + 1 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    wshape = tuple(weight.shape)
    if len(wshape) > rank or any(
        w is not None and p is not None and w not in (1, p)
        for w, p in zip(wshape, shape)
    ):
        raise ValueError(
            "`sample_weight` must hold one weight per sample, shape "
            f"{shape[:1]}, or one per pixel, shape {shape} or {shape + (1,)}. "
            f"Received: sample_weight shape {received}"
        )
    weight = ops.reshape(weight, ops.shape(weight) + (1,) * (rank - len(wshape)))
    return ops.broadcast_to(weight, ops.shape(pixels))


def check_rescale(rescale):
    """Returns `rescale` if it is a finite, non-zero number or `None`, else
    raises: NaN or inf makes every output NaN, 0 every image blank."""
    if rescale is None:
        return None
    if not is_real(rescale):
        raise TypeError(
            "`rescale` must be a number such as 1 / 255, or None. "
            f"Received: rescale={rescale!r}"
        )
    if not math.isfinite(rescale) or rescale == 0:
        raise ValueError(
            "`rescale` must be a finite number other than 0, such as 1 / 255 "
            "(NaN or inf makes every output NaN, 0 every image blank), or "
            f"None. Received: rescale={rescale!r}"
        )
    return as_python_number(rescale)


def check_class_weights(class_weights):
    """`class_weights` as a list of Python floats (JSON for `get_config`), or
    `None`; else raises `ValueError`.

    Takes a list or tuple of numbers >= 0, numpy numbers included, a 1-D
    numpy array, as `sklearn.utils.class_weight.compute_class_weight` gives,
    or a dict `{class id: weight}` over ids 0, 1, ..., as Keras's
    `class_weight` is.
    """
    if class_weights is None:
        return None
    weights = class_weights
    if isinstance(weights, np.ndarray) and weights.ndim == 1:
        weights = list(weights)
    if isinstance(weights, dict) and set(weights) == set(range(len(weights))):
        weights = [weights[i] for i in range(len(weights))]
    problem = _class_weights_problem(weights)
    if problem:
        raise ValueError(
            "`class_weights` must be a list (or 1-D numpy array, or dict of "
            "ids 0, 1, ...) of non-negative numbers, one per class, e.g. "
            "[0.5, 1.0, 2.0]; "
            f"{problem}. Received: class_weights={class_weights!r}"
        )
    return [float(w) for w in weights]


def _class_weights_problem(weights):
    """What is wrong with `weights` (a list, once made one), or `None`."""
    if isinstance(weights, np.ndarray):
        return f"this is a {weights.ndim}-D array"
    if isinstance(weights, dict):
        return "a dict needs the keys 0, 1, ..., one per class id"
    if not isinstance(weights, (list, tuple)):
        return f"this is a {type(weights).__name__}"
    for i, weight in enumerate(weights):
        number = isinstance(weight, numbers.Real) and not isinstance(
            weight, (bool, np.bool_)
        )
        # `>= 0` refuses NaN; inf is kept, as a config saved with it loaded.
        if not (number and weight >= 0):
            return f"class_weights[{i}]={weight!r} is not"
    return None


def check_non_negative(name, value, example="1.0"):
    """Returns `value` as a float if it is a finite number >= 0, else raises
    (NaN made every loss NaN; inf made a Dice loss NaN, a weighted sum inf and
    a focal loss 0 everywhere)."""
    if not (is_real(value) and 0 <= value < math.inf):
        raise ValueError(
            f"`{name}` must be a finite number >= 0, e.g. {example}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_threshold(value, allow_none=False):
    """`value` as a Python float if it is a finite number (numpy ones too),
    or `None` where `allow_none`; else raises. NaN and inf were taken, and
    predicted every pixel background."""
    if value is None and allow_none:
        return None
    usage = "e.g. 0.5 for probabilities or 0 for logits" + (
        ", or None" if allow_none else ""
    )
    if not is_real(value):
        raise TypeError(
            f"`threshold` must be a number, {usage}. Received: threshold={value!r}"
        )
    if not np.isfinite(value):
        raise ValueError(
            f"`threshold` must be a finite number, {usage}. "
            f"Received: threshold={value!r}"
        )
    return float(value)


def check_dilation_rates(value):
    """`value` as a tuple of positive ints, else raises."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(
            "`dilation_rates` must be a non-empty list of ints, one atrous "
            "branch per rate, e.g. [6, 12, 18] at output stride 16. "
            f"Received: dilation_rates={value!r}"
        )
    return tuple(
        check_positive_int(f"dilation_rates[{i}]", rate) for i, rate in enumerate(value)
    )


def check_fraction(name, value):
    """Returns `value` as a float if it is a number in [0, 1], else raises."""
    if not is_real(value):
        raise TypeError(
            f"`{name}` must be a number in [0, 1], e.g. 0.5. Received: {name}={value!r}"
        )
    if not 0 <= value <= 1:
        raise ValueError(
            f"`{name}` must be in [0, 1], e.g. 0.5. Received: {name}={value!r}"
        )
    return float(value)


def check_class_names(class_names):
    """`class_names` as a list of str; a str (whose letters were taken as
    names), a dict, or a name that is no str or int (`None`) is refused.
    The count is the caller's to check."""
    names = None
    if not isinstance(class_names, (str, bytes, dict)):
        try:
            names = list(class_names)
        except TypeError:
            pass
    if names is None or not all(
        isinstance(n, (str, np.str_)) or (is_int(n)) for n in names
    ):
        raise TypeError(
            "`class_names` must be a list of names (str), one per class, e.g. "
            f"['background', 'cat']. Received: class_names={class_names!r}"
        )
    return [str(n) for n in names]
