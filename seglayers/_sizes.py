"""Size arguments: one size per spatial axis, given as an int or a sequence.

Messages follow `seglayers._validation`: they name the argument, say what
was expected with an example, and end with `Received: name=value`.
"""

import numpy as np

from seglayers._validation import is_int


def sizes(value):
    """`value` as a tuple if it is a 1-D numpy array of integers
    (`np.array(image.shape[:2])`), else as it is: sizes may be lists, tuples
    or such arrays."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        return tuple(value.tolist())
    return value


def check_size_pair(name, value, what="a positive int or a pair (height, width)"):
    """`value` (an int, or a pair of ints >= 1) as a `(height, width)` tuple,
    else raises a `ValueError` that says `what` it should be."""
    pair = sizes(value)
    if is_int(value):
        pair = (value, value)
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or not all(is_int(s) for s in pair)
        or min(pair) < 1
    ):
        raise ValueError(
            f"`{name}` must be {what}, e.g. 256. Received: {name}={value!r}"
        )
    return tuple(int(s) for s in pair)


_SPATIAL_NAMES = {2: "(height, width)", 3: "(depth, height, width)"}


def check_spatial_size(name, value, spatial_dims):
    """`value` (an int, or `spatial_dims` ints >= 1) as a tuple of one size
    per spatial axis; `check_size_pair` for any rank (2 or 3)."""
    if spatial_dims == 2:
        return check_size_pair(name, value)
    given = sizes(value)
    if is_int(value):
        given = (value,) * spatial_dims
    if (
        not isinstance(given, (list, tuple))
        or len(given) != spatial_dims
        or not all(is_int(s) for s in given)
        or min(given) < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a tuple "
            f"{_SPATIAL_NAMES[spatial_dims]} of positive ints, e.g. 64. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(s) for s in given)
