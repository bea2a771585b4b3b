"""Argument checks shared by the public classes.

Every message names the argument, says what was expected and how to fix it,
and ends with `Received: name=value`, as Keras's own errors do.
"""

import keras


def _fmt(choices):
    shown = [repr(c) for c in choices]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, else raises `ValueError`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {_fmt(choices)}. Received: {name}={value!r}"
        )
    return value


def check_positive_int(name, value):
    """Returns `value` if it is an int >= 1 (not a bool), else raises."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"`{name}` must be a positive integer. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer (1 or more). "
            f"Received: {name}={value!r}"
        )
    return value


def check_rate(name, value):
    """Returns `value` if it is a float in [0, 1), else raises."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
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
    """Returns `value` if it is a bool, else raises `TypeError`."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def check_ignore_class(value):
    """Returns `value` if it is an int class id or None, else raises."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(
            "`ignore_class` must be an int class id such as 255, or None. "
            f"Received: ignore_class={value!r}"
        )
    return value
