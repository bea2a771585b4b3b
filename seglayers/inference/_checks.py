"""Checks of the arguments of `predict_tiled` and `predict_mask`, shared by
both (and by `seglayers predict` through them)."""

import numpy as np

from seglayers._validation import holds_numbers


def check_smallest_size(name, value, size, model):
    """`2**depth` of the seglayers model that `model` is or wraps (1 if
    none): the smallest input it takes; raises if `size`, the checked
    `value` of the argument `name`, is smaller along an axis."""
    network = _segmentation_model(model)
    if network is None:
        return 1
    smallest = 2**network.depth
    if min(size) < smallest:
        raise ValueError(
            f"`{name}` must be at least {smallest} along every axis for a "
            f"`{type(network).__name__}` of depth={network.depth}, which halves "
            f"its input {network.depth} times. Received: {name}={value!r}. Use "
            f"at least {smallest}, best the size the model trained on."
        )
    return smallest


def _segmentation_model(model):
    """The seglayers model that `model` is, or that it wraps
    (`keras.Model(inputs, unet(inputs))`); None if neither. Only a seglayers
    model's `depth` counts: elsewhere `depth` may count blocks."""
    from seglayers.models.segmentation_model import SegmentationModel

    layers = [model]
    while layers:
        layer = layers.pop(0)
        if isinstance(layer, SegmentationModel):
            return layer
        layers.extend(getattr(layer, "layers", ()))
    return None


def model_spatial_dims(model, unknown=2):
    """2 or 3: the `spatial_dims` of the seglayers model that `model` is or
    wraps (or its own), else the rank of its input less two; `unknown` for
    a subclassed model not yet called, which says neither."""
    network = _segmentation_model(model)
    if network is not None:
        return network.spatial_dims
    if getattr(model, "spatial_dims", None) in (2, 3):
        return model.spatial_dims
    try:
        rank = len(model.inputs[0].shape) - 2
    except (AttributeError, IndexError, TypeError, ValueError):
        return unknown
    return rank if rank in (2, 3) else 2


def image_array(image, name="image"):
    """`image` as a numpy array: a tensor converted, numpy as it is (no copy
    of an image that may be large); nested lists of unequal lengths are a
    `ValueError`, and what is no array at all (`None`, a file's path) a
    `TypeError`, naming `name`."""
    import keras

    try:
        if keras.ops.is_tensor(image):
            array = keras.ops.convert_to_numpy(image)
        else:
            array = np.asarray(image)
    except ValueError as error:  # numpy: "... has an inhomogeneous shape ..."
        raise ValueError(
            f"`{name}` must be one array of pixels; nested lists need rows of "
            f"one length and pixels of one channel count. numpy: {error}"
        ) from None
    if array.ndim == 0 and array.dtype.kind in "OSU":
        hint = ""
        if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
            hint = " Read the file first, e.g. np.asarray(PIL.Image.open(path))."
        raise TypeError(
            f"`{name}` must be an array of pixels (a numpy array, a tensor or "
            f"nested lists).{hint} Received: {name}={image!r} of type "
            f"{type(image).__name__}"
        )
    return array


def check_model(model, who):
    """Refuses what is no Keras model (`None`, a path to one) before an
    image is looked at."""
    if not callable(getattr(model, "predict_on_batch", None)):
        hint = (
            " Load it first: `keras.saving.load_model(path)`."
            if isinstance(model, str) or hasattr(model, "__fspath__")
            else ""
        )
        raise TypeError(
            f"`model` must be a Keras model, such as a `seglayers.UNet`, for "
            f"`{who}`.{hint} Received: model={model!r} of type "
            f"{type(model).__name__}"
        )


def check_channels(model, image):
    """Raises if the model was built for another number of channels than
    the image's: named here with the image's shape, not a batch of tiles'
    (a model of a fixed size even called the channels unknown)."""
    from seglayers.models.segmentation_model import SegmentationModel

    # The model's own input: a wrapper may change the channels (a 1x1
    # convolution to 3 for an RGB encoder) before the seglayers model inside.
    if isinstance(model, SegmentationModel):
        channels = model.input_channels  # None until built: any
    else:
        try:
            channels = model.inputs[0].shape[-1]
        except (AttributeError, IndexError, TypeError, ValueError):
            return  # A subclassed model: it says so itself.
    if isinstance(channels, int) and image.shape[-1] != channels:
        raise ValueError(
            f"`image` has {image.shape[-1]} channels, and the model takes "
            f"{channels}: convert the image, or use a model built for "
            f"{image.shape[-1]}. Received: image of shape {image.shape}"
        )


# Values of an image checked at a time for NaN (whole rows, or slices of a
# volume): a bounded temporary, not a boolean map of the whole image.
_CHECKED_VALUES = 1 << 22


def check_numbers(image, model, name="`image`"):
    """Refuses an image of complex, string or object values (a cast would
    drop an imaginary part without a word) and one holding NaN or infinite
    values, which a convolution spreads over every tile they touch, and an
    arg-max then turns into class ids; also, for a model that computes in
    float32 or less, wider floats beyond float32's range, which its cast
    makes infinite. `name` says what the image is in the messages."""
    check_number_dtype(image, name)
    if image.dtype.kind in "biu" or not image.size:
        return
    limit = None
    if image.dtype.itemsize > 4 and _input_dtype(model) != "float64":
        limit = np.finfo(np.float32).max
    rows = max(1, _CHECKED_VALUES // max(1, image[0].size))
    for start in range(0, len(image), rows):
        chunk = image[start : start + rows]
        bad = ~np.isfinite(chunk)
        if limit is not None:
            bad |= np.abs(chunk) > limit
        if bad.any():
            first = np.argwhere(bad)[0]
            value = chunk[tuple(first)]
            first[0] += start
            at = tuple(int(i) for i in first)
            if np.isfinite(value):
                what = (
                    "values beyond float32's range, about 3.4e38, which the "
                    f"model's cast to float32 makes infinite (the first, {value}, "
                    f"at {at})"
                )
                fix = "Scale or clip them (numpy.clip)"
            else:
                what = f"NaN or infinite values (the first at {at})"
                fix = "Replace them (e.g. with numpy.nan_to_num)"
            raise ValueError(
                f"{name} holds {what}; each would spread through the "
                f"convolutions over the pixels around it. {fix} before "
                "predicting. "
                f"Received: {name.replace('`', '')} of shape {image.shape}"
            )


def check_number_dtype(image, name="`image`"):
    """Refuses an array of complex, string or object values: a cast would
    drop an imaginary part without a word."""
    if not holds_numbers(image.dtype):
        raise TypeError(
            f"{name} must hold numbers (integers or floats), as the model's "
            f"inputs do. Received: {name.replace('`', '')} of dtype {image.dtype}. "
            "Convert it, e.g. with .astype('float32') (np.abs(x) for complex "
            "values)."
        )


def _input_dtype(model):
    """What the model casts its input to: its `keras.Input`'s dtype (float32
    unless given), or for a subclassed model its compute dtype."""
    try:
        return model.inputs[0].dtype
    except (AttributeError, IndexError, TypeError, ValueError):
        return getattr(model, "compute_dtype", "float32")


def check_one_output(outputs, who):
    """The one output in `outputs` (a dict or list of one entry is
    unwrapped); several (a multi-output Keras model) are refused with how to
    pick one."""
    if not isinstance(outputs, (dict, list, tuple)):
        return outputs
    names = list(outputs) if isinstance(outputs, dict) else list(range(len(outputs)))
    if len(names) == 1:
        return outputs[names[0]]
    first = names[0] if names else 0
    raise TypeError(
        f"{who} needs a model of one output, the class scores of each pixel; "
        f"this model returns {len(names)} ({names}). Pass a model of the one "
        f"to use, e.g. `keras.Model(model.input, model.output[{first!r}])`."
    )
