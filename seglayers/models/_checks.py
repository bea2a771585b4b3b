"""Argument and input-shape checks of the seglayers models."""

import contextvars
import copy
import os

import keras
import numpy as np

from seglayers._validation import check_positive_int
from seglayers.layers import _spatial
from seglayers.models import encoders

# How to convert inputs whose channels differ from the model's.
_CHANNEL_HINTS = {
    2: "e.g. grayscale to RGB",
    3: "the same modalities, stacked on the last axis",
}


def level_filters(filters, depth):
    """The channels of each level, top to bottom: `depth + 1` ints.

    An int is the top level's width, doubled at every level below it
    (64, 128, 256, 512, 1024 in the paper); a list (or tuple, or 1-D
    numpy array) gives every level.
    """
    if isinstance(filters, np.ndarray) and filters.ndim == 1:
        filters = filters.tolist()
    if isinstance(filters, (list, tuple)):
        if len(filters) != depth + 1:
            raise ValueError(
                f"`filters` as a list needs one width per level, `depth` + 1 = "
                f"{depth + 1} values from the top level down to the bottleneck, "
                f"e.g. {[16 * 2**i for i in range(depth + 1)]}. "
                f"Received: filters={list(filters)} with depth={depth}"
            )
        return [check_positive_int(f"filters[{i}]", w) for i, w in enumerate(filters)]
    filters = check_positive_int("filters", filters)
    return [filters * 2**level for level in range(depth + 1)]


def config_filters(filters, widths):
    """`filters` as a config keeps it: `None` (the default), the top width
    as a Python int, or one Python int per level (`widths`, from
    `level_filters`)."""
    if filters is None:
        return None
    if isinstance(filters, np.ndarray) and filters.ndim == 1:
        return list(widths)
    if isinstance(filters, (list, tuple)):
        return type(filters)(widths)
    return widths[0]


def check_input_shape(
    shape, input_channels, depth, encoder, model_name, spatial_dims=2
):
    """`shape` as a tuple if a model with these settings takes it, else raises
    a `ValueError` that says what to do."""
    things = "images" if spatial_dims == 2 else "volumes"
    if isinstance(shape, dict):
        # A dataset of dicts passes the dict as the input (its keys were
        # printed as the shape).
        raise ValueError(
            f"`{model_name}` takes one tensor of {things}, not a dict. For a "
            "dataset of dicts such as `as_dict=True` gives, map it to pairs "
            "first: `.map(lambda d: (d['images'], d['segmentation_masks']))`. "
            f"Received: a dict with keys {sorted(shape)}"
        )
    shape = tuple(shape)
    if len(shape) != spatial_dims + 2:
        raise ValueError(
            f"`{model_name}` with spatial_dims={spatial_dims} expects "
            f"channels-last {things} of shape {_spatial.layout(spatial_dims)}"
            f"{_layout_hint(shape, spatial_dims)}. Received: input shape {shape}"
        )
    if shape[-1] is None and input_channels is None:
        example = (None,) * (spatial_dims + 1) + (3,)
        raise ValueError(
            f"`{model_name}` needs a known number of input channels, e.g. "
            f"{example}. Received: input shape {shape}"
        )
    if shape[-1] is None:
        # Never let unknown channels through: an encoder's preprocessing
        # (a mean per RGB channel) would broadcast one channel to three.
        raise ValueError(
            f"This `{model_name}` was built for "
            f"{_channels(input_channels, 'input ')}, and these {things} have "
            "an unknown number. TensorFlow traces unknown channels after data "
            "of another channel count (or a pipeline that does not set them, "
            "such as `tf.io.decode_image` without `channels`): give every batch "
            f"{_channels(input_channels)} (e.g. `channels={input_channels}` "
            f"when decoding). Received: input shape {shape}"
        )
    if input_channels is not None and shape[-1] != input_channels:
        raise ValueError(
            f"This `{model_name}` was built for "
            f"{_channels(input_channels, 'input ')}. Received: input shape "
            f"{shape} with {_channels(shape[-1])}. Convert the {things} "
            f"({_CHANNEL_HINTS[spatial_dims]}) or build a new model for "
            f"{_channels(shape[-1])}."
        )
    if encoder is not None:
        _check_encoder_input_size(encoder, shape, model_name)
    minimum = 2**depth
    # Only sizes known as ints: JAX's shape-polymorphic export traces with
    # symbolic sizes, which cannot be compared with a number.
    too_small = [
        size for size in shape[1:-1] if isinstance(size, int) and size < minimum
    ]
    if too_small:
        names = _spatial.size_names(spatial_dims)
        smallest = "(" + ", ".join([str(minimum)] * spatial_dims) + ")"
        raise ValueError(
            f"`{model_name}` with depth={depth} halves the input {depth} "
            f"times, so {names} must be at least {minimum}. "
            f"Received: input shape {shape}. Resize or pad the {things} to at "
            f"least {smallest}, or use a smaller `depth`."
        )
    return shape


def nan_when_too_small(outputs, inputs, depth):
    """`outputs`, or all NaN where `inputs` are smaller than `2**depth`
    along a spatial axis whose size is known only when the graph runs: an
    export for inputs of any size (SavedModel, TFLite, ONNX). Sizes known
    when traced are refused by `check_input_shape`; a served graph cannot
    raise (a graph assertion is no TFLite op), so it answers NaN rather
    than a plausible mask of an image too small for the model, as it did.
    A select on the output, only in graphs of free sizes."""
    if isinstance(inputs, keras.KerasTensor):  # symbolic: no sizes to check
        return outputs
    free = [s for s in keras.ops.shape(inputs)[1:-1] if not isinstance(s, int)]
    if not free:
        return outputs
    minimum = 2**depth
    large_enough = keras.ops.greater_equal(free[0], minimum)
    for size in free[1:]:
        large_enough = keras.ops.logical_and(
            large_enough, keras.ops.greater_equal(size, minimum)
        )
    return keras.ops.where(large_enough, outputs, float("nan"))


def _layout_hint(shape, spatial_dims):
    """What to do about an input of `len(shape)` axes, for the error."""
    hints = []
    if len(shape) == spatial_dims + 1:
        hints += [
            "for one sample, add a batch axis (`x[None]`)",
            "for a batch of one-channel data, a channel axis (`x[..., None]`)",
        ]
    if len(shape) == 5 and spatial_dims == 2:
        hints.append("for volumes, build the model with spatial_dims=3")
    if len(shape) == 4 and spatial_dims == 3:
        hints.append("for images, build the model with spatial_dims=2")
    return ": " + "; ".join(hints) if hints else ""


def _check_encoder_input_size(encoder, shape, model_name):
    """Raises if the encoder was built for a fixed size that `shape`
    does not have, before Keras's input-spec error names an internal
    model."""
    built_for = encoders.input_size(encoder)
    # Sizes not known as ints (None, or JAX export's symbolic sizes) are
    # left to Keras.
    if all(
        fixed is None or not isinstance(size, int) or size == fixed
        for fixed, size in zip(built_for, shape[1:3])
    ):
        return
    shown = tuple("any" if size is None else size for size in built_for)
    shown = f"({shown[0]}, {shown[1]})"
    raise ValueError(
        f"This `{model_name}`'s encoder was built for images of (height, width) "
        f"{shown}, its `input_shape`, and takes no other size. Received: "
        f"input shape {shape}. Resize the images to {shown}, or build the "
        "encoder for any size, e.g. keras.applications.MobileNetV3Small("
        "input_shape=(None, None, 3), include_top=False)."
    )


def check_pyramid_model_arguments(model_name, encoder, spatial_dims):
    """Raises unless a model that only decodes an encoder's pyramid (it has
    no encoder of its own, and encoders are 2-D) gets an encoder and images."""
    if encoder is None:
        raise ValueError(
            f"`{model_name}` decodes the feature pyramid of an encoder and has "
            "no encoder of its own: pass a name such as encoder='resnet50' (the "
            "default), a functional `keras.Model` or a keras-hub backbone. "
            "Received: encoder=None"
        )
    if spatial_dims != 2:
        raise ValueError(
            f"`{model_name}` is a 2-D model (its encoders are 2-D image "
            "models); for volumes use UNet(spatial_dims=3). "
            f"Received: spatial_dims={spatial_dims!r}"
        )


def check_encoder_levels(model_name, needed, available, encoder):
    """Raises unless the encoder's pyramid has every level in `needed`."""
    missing = [level for level in needed if level not in available]
    if missing:
        strides = ", ".join(str(2 ** int(level[1:])) for level in missing)
        raise ValueError(
            f"`{model_name}` reads the encoder's features at levels "
            f"{', '.join(needed)} (stride 2**k at level Pk), but this encoder "
            f"has none at stride {strides} (its levels: {', '.join(available)}). "
            "Use an encoder that halves the size at each of those strides. "
            f"Received: encoder={getattr(encoder, 'name', encoder)!r}"
        )


# True while `model_from_config` builds a model: what a saved file holds
# is loaded as it predicted, even where a new model would be refused.
_LOADING = contextvars.ContextVar("seglayers_loading", default=False)


def model_from_config(cls, config):
    """`SegmentationModel.from_config`: `cls(**config)`, the encoder
    deserialized, and files saved before some arguments were refused
    loaded as they predicted (without an encoder, the encoder arguments
    changed nothing; a one-class softmax gave 1 everywhere)."""
    config = dict(config)
    if "encoder" in config and config["encoder"] is None:
        config.update(NO_ENCODER_DEFAULTS)
    if isinstance(config.get("encoder"), dict):
        # Keras's deserialization empties the dict it reads; keep the
        # caller's config whole.
        config["encoder"] = keras.saving.deserialize_keras_object(
            copy.deepcopy(config["encoder"])
        )
    token = _LOADING.set(True)
    try:
        return cls(**config)
    finally:
        _LOADING.reset(token)


def loading():
    """Whether a model is being made from a saved config (`from_config`)."""
    return _LOADING.get()


# What the encoder arguments are without an encoder (the model's own).
NO_ENCODER_DEFAULTS = {
    "encoder_weights": None,
    "encoder_trainable": True,
    "encoder_preprocessing": None,
}


def check_model_arguments(
    model_name,
    num_classes,
    output_activation,
    encoder,
    weights,
    trainable,
    preprocessing,
    spatial_dims,
):
    """Refuses `SegmentationModel` arguments that would make a useless model
    or change nothing: a softmax over one class; a pluggable `encoder` of
    volumes; encoder arguments without a pluggable `encoder`, and
    `encoder_weights` without a named one."""
    if encoder is not None and spatial_dims != 2:
        raise ValueError(
            "Pluggable encoders are 2-D image models, so `encoder` needs "
            "spatial_dims=2; for volumes use encoder=None (the model's own "
            f"encoder). Received: spatial_dims={spatial_dims}, "
            f"encoder={getattr(encoder, 'name', encoder)!r}"
        )
    if num_classes == 1 and output_activation == "softmax" and not loading():
        raise ValueError(
            "A softmax over one channel is 1 everywhere: with num_classes=1 "
            "(binary), use output_activation='sigmoid' (or 'auto', which "
            "picks it), or None for logits. Received: num_classes=1, "
            "output_activation='softmax'"
        )
    if encoder is None:
        given = {
            "encoder_weights": weights,
            "encoder_trainable": trainable,
            "encoder_preprocessing": None if preprocessing == "auto" else preprocessing,
        }
        for name, value in given.items():
            if value != NO_ENCODER_DEFAULTS[name]:
                raise ValueError(
                    f"`{name}` is for a pluggable encoder, and this "
                    f"`{model_name}` has none (encoder=None: its own encoder, "
                    "trained from scratch), so it would change nothing. Pass "
                    f"an encoder (e.g. encoder='resnet50') or drop `{name}`. "
                    f"Received: {name}={value!r}"
                )
    elif isinstance(encoder, str) and not _known_weights(weights):
        # keras.applications' own message names its `weights`.
        raise ValueError(
            "`encoder_weights` must be None (random weights), 'imagenet' or "
            f"the path of a weights file for encoder={encoder!r}. "
            f"Received: encoder_weights={weights!r}"
        )
    elif weights is not None and not isinstance(encoder, str):
        raise ValueError(
            "`encoder_weights` loads the weights of a named encoder (e.g. "
            "encoder='resnet50', encoder_weights='imagenet'); a model passed "
            "as `encoder` keeps the weights it has, so load them when you "
            "build it (e.g. keras.applications.ResNet50(include_top=False, "
            f"weights='imagenet')). Received: encoder_weights={weights!r}, "
            f"encoder={getattr(encoder, 'name', encoder)!r}"
        )


def _known_weights(weights):
    """Whether keras.applications takes `weights`: None, 'imagenet' or the
    path of a weights file (local, or remote such as gs://, which Keras
    reads)."""
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return True
    if not isinstance(weights, (str, os.PathLike)):
        return False
    path = os.fspath(weights)
    return "://" in str(path) or os.path.isfile(path)


def check_save_path(model_name, filepath):
    """Refuses an HDF5 path: Keras 3.15's legacy HDF5 format writes a
    subclassed model to a file that it cannot load back ("Unknown layer:
    'UNet'", then "Layer count mismatch"). (`ModelCheckpoint` calls `save`
    too; `keras.saving.save_model(model, "m.h5")` does not.)"""
    if str(filepath).endswith((".h5", ".hdf5")):
        raise ValueError(
            f"`{model_name}` cannot be saved as HDF5: Keras's legacy "
            ".h5 format writes the file but cannot load it back. Save as .keras "
            "(`model.save('model.keras')`), or the weights alone "
            "(`model.save_weights('model.weights.h5')`). "
            f"Received: filepath={str(filepath)!r}"
        )


def check_preprocessing(preprocessing, channels):
    """Returns `preprocessing` if images of `channels` (`None`: unknown yet)
    are what it maps: "caffe" and "torch" have a value per RGB channel,
    which one channel would broadcast to three (and four would fail to)."""
    if preprocessing in ("caffe", "torch") and channels not in (None, 3):
        raise ValueError(
            f"encoder_preprocessing={preprocessing!r} maps RGB images (one "
            "mean per colour channel), but this encoder takes images of "
            f"{channels} channel{'s' * (channels != 1)}. Pass "
            "encoder_preprocessing=None (the images as they are) or 'tf' "
            "(any channels, scaled to [-1, 1]). "
            f"Received: encoder_preprocessing={preprocessing!r}"
        )
    return preprocessing


def _channels(count, kind=""):
    """ "1 channel", "3 input channels"."""
    return f"{count} {kind}channel" + ("s" if count != 1 else "")
