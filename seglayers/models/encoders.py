"""Pluggable encoders: feature pyramids from other Keras models.

An encoder is anything that turns an image into feature maps at strides 2,
4, 8, 16 and 32 (some may be missing). Three kinds are understood:

- a name from `ENCODERS` (`"resnet50"`, ...): the `keras.applications`
  model, built with `include_top=False` and `weights=None` unless asked;
- a one-output `keras.Model` (any `keras.applications` model, or your own
  CNN): for every stride the last layer whose output has that stride is
  taken, found by running the model's graph symbolically on a probe of the
  model's own input size (256×256 where it takes any size);
- a model whose outputs already are the pyramid: a keras-hub backbone with
  `pyramid_outputs` (`{"P1": ..., "P5": ...}`), or a `keras.Model` with
  several outputs, each at a different power-of-two stride.

Whatever is given becomes one functional `keras.Model` that returns the
features at the strides the model uses, shallow to deep; it shares its
layers (and weights) with the model given, and it is what the model saves.
`resolve` makes it; `SegmentationModel.encode` hands its outputs to the
decoder as a dict by level (`"P3"`: stride 8).
"""

import warnings

import keras
from keras import ops

# name: (the `keras.applications` function, the input preprocessing it
# expects for pretrained weights, from images in [0, 255]).
ENCODERS = {
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "resnet101v2": ("ResNet101V2", "tf"),
    "efficientnetv2b0": ("EfficientNetV2B0", None),
    "efficientnetv2b1": ("EfficientNetV2B1", None),
    "efficientnetv2s": ("EfficientNetV2S", None),
    "mobilenetv3small": ("MobileNetV3Small", None),
    "mobilenetv3large": ("MobileNetV3Large", None),
    "convnexttiny": ("ConvNeXtTiny", None),
    "convnextsmall": ("ConvNeXtSmall", None),
}

# How `keras.applications.*.preprocess_input` maps [0, 255] RGB images;
# `None`: the model has its own preprocessing layers and takes [0, 255].
PREPROCESSINGS = ("caffe", "tf", "torch", None)

_PROBE_SIZE = 256
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def build_encoder(name, weights=None, dtype=None):
    """The `keras.applications` model for `name`, without its classifier.

    Returns `(model, preprocessing)`. `weights=None` (random) by default;
    `"imagenet"` downloads the pretrained weights when called. `dtype`: the
    dtype policy of its layers (default: the global one).
    """
    if name not in ENCODERS:
        raise ValueError(
            f"Unknown encoder name {name!r}. Known names: "
            f"{', '.join(sorted(ENCODERS))}; or pass a Keras model (e.g. "
            "keras.applications.DenseNet121(include_top=False, weights=None)). "
            f"Received: encoder={name!r}"
        )
    function, preprocessing = ENCODERS[name]
    # keras.applications takes no dtype: its layers take the global policy,
    # set for the build only (a model's `dtype=` reached its decoder alone).
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype or previous)
    try:
        model = getattr(keras.applications, function)(
            include_top=False, weights=weights, input_shape=(None, None, 3)
        )
    finally:
        keras.config.set_dtype_policy(previous)
    return model, preprocessing


def resolve(encoder, depth, weights=None, model_name="UNet", dtype=None):
    """The one way an encoder becomes a feature pyramid.

    `encoder` is a name from `ENCODERS`, a functional `keras.Model` or a
    keras-hub backbone. Returns `(model, strides, preprocessing)`: a
    functional model whose outputs, shallow to deep, are the features at
    `strides` (powers of two up to and including `2**depth`), and the input
    preprocessing a named encoder's pretrained weights expect (`None`
    otherwise). A named encoder's layers take the dtype policy `dtype`.
    Name each output with `level_name`.
    """
    preprocessing = None
    if isinstance(encoder, str):
        encoder, preprocessing = build_encoder(encoder, weights=weights, dtype=dtype)
    model, strides = feature_pyramid(encoder, depth, model_name)
    return model, strides, preprocessing


def level_name(stride):
    """The pyramid level of a stride, in keras-hub's `pyramid_outputs`
    naming: `"P{k}"` for stride `2**k` (`"P1"`: 2, `"P5"`: 32)."""
    return f"P{stride.bit_length() - 1}"


def feature_pyramid(encoder, depth, model_name="UNet"):
    """A functional model giving `encoder`'s features at strides 2 .. 2**depth.

    Returns `(model, strides)`: the model's outputs, shallow to deep, are at
    `strides` (a subset of 2, 4, ..., 2**depth that always holds 2**depth).
    """
    if not isinstance(encoder, keras.Model) or not getattr(encoder, "inputs", None):
        raise TypeError(
            "`encoder` must be a name such as 'resnet50' or a functional "
            "`keras.Model` (e.g. a keras.applications model built with "
            "include_top=False, or a keras-hub backbone). "
            f"Received: encoder={encoder!r}"
        )
    if len(encoder.inputs) != 1 or len(encoder.inputs[0].shape) != 4:
        raise ValueError(
            "`encoder` must take one image input (batch, height, width, "
            "channels): pass a model of one such input, e.g. "
            "`keras.Model(images, features)` around a model of several. "
            f"Received: an encoder with inputs {encoder.inputs}"
        )
    pyramid = getattr(encoder, "pyramid_outputs", None)
    in_graph_order = False
    if pyramid:  # keras-hub: {"P1": stride 2, ..., "P5": stride 32}
        candidates = [pyramid[key] for key in sorted(pyramid, key=lambda k: int(k[1:]))]
    elif len(encoder.outputs) > 1:
        candidates = list(encoder.outputs)
    else:
        candidates = _layer_outputs(encoder)
        in_graph_order = True
    by_stride, short = _by_stride(encoder, candidates, in_graph_order)
    if not by_stride:
        raise ValueError(
            "Found no feature map of `encoder` at a stride from 2 to 32: a map "
            "is at stride s when its size is the input's over s, rounded up or "
            "down. Encoders with unpadded ('valid') convolutions, such as "
            "keras.applications' InceptionV3, lose a few pixels at each level "
            "and are not understood. Pass an encoder with 'same' padding (e.g. "
            "keras.applications.DenseNet121(include_top=False, weights=None)) "
            f"or one whose outputs are the pyramid. Received: encoder={encoder.name!r}"
        )
    missing = sorted(short - set(by_stride))
    if missing and min(missing) < 2**depth:
        warnings.warn(
            f"`{model_name}` leaves out the encoder's features at strides "
            f"{missing}: their maps are a few pixels short of the input's size "
            "over the stride, as unpadded ('valid') convolutions make them, so "
            "the decoder goes without those skip connections.",
            stacklevel=3,
        )
    bottom = 2**depth
    if bottom not in by_stride:
        found = sorted(by_stride)
        raise ValueError(
            f"`{model_name}` with depth={depth} needs the encoder's features at stride "
            f"{bottom}, but this encoder has features at strides {found}. Use "
            f"depth={max(found).bit_length() - 1} or an encoder that reaches "
            f"stride {bottom}."
        )
    strides = [s for s in sorted(by_stride) if 2 <= s <= bottom]
    features = [by_stride[s] for s in strides]
    if len(features) == len(encoder.outputs) and all(
        a is b for a, b in zip(features, encoder.outputs)
    ):
        return encoder, strides  # already this pyramid (e.g. a loaded UNet's)
    model = keras.Model(encoder.inputs, features, name=f"{encoder.name}_pyramid")
    return model, strides


def _layer_outputs(encoder):
    """The single 4-D outputs of `encoder`'s layers, in graph order (a
    shared layer's first call)."""
    outputs = []
    for layer in encoder.layers:
        output = layer.output
        if not isinstance(output, (list, tuple)) and len(output.shape) == 4:
            outputs.append(output)
    return outputs


def input_size(encoder):
    """The `(height, width)` that `encoder` was built for, each `None` where
    it takes any size (as with `input_shape=(None, None, 3)`)."""
    height, width = encoder.inputs[0].shape[1:3]
    return (height, width)


def _by_stride(encoder, candidates, in_graph_order=False):
    """`({stride: the last of `candidates` at that stride}, short)`, strides
    2 to 32, and `short` the strides of candidates a few pixels short of one
    (see `_short_stride`).

    With `in_graph_order` (a model's layers, input to output) a candidate
    at a stride below one already reached is passed over: deep in a small
    fixed-size model a padding layer's output can have the size of a
    shallower stride (2×2 at stride 32, padded to 4×4 in ResNet50V2 at 64).
    """
    probe = keras.Model(encoder.inputs, candidates)
    channels = encoder.inputs[0].shape[-1]
    # A model built with a fixed `input_shape` (the usual way to build a
    # keras.applications model) accepts only that size, so it is probed at
    # that size; free dimensions at 256, which every stride up to 32 divides.
    size = tuple(s if s is not None else _PROBE_SIZE for s in input_size(encoder))
    specs = probe.compute_output_spec(keras.KerasTensor((1, *size, channels)))
    by_stride, short = {}, set()
    for tensor, spec in zip(candidates, specs):
        strides = {_stride(n, s) for n, s in zip(size, spec.shape[1:3])}
        if len(strides) != 1 or None in strides:
            short.update(_short_stride(n, s) for n, s in zip(size, spec.shape[1:3]))
            continue
        stride = strides.pop()
        if in_graph_order and by_stride and stride < max(by_stride):
            continue
        by_stride[stride] = tensor
    return by_stride, short - {None}


def _stride(size, feature_size):
    """The power-of-two stride (2 to 32) that takes `size` to
    `feature_size`, or `None`.

    Padding rounds the feature size up ("same": 224 -> 7 at stride 32, 70
    -> 3) or, without padding, down, so a stride fits when `feature_size`
    is `size / stride` rounded either way; rounding up is tried first, as
    the two can disagree (a 40-pixel input gives 2 both as 40 / 32 rounded
    up and as 40 / 16 rounded down).
    """
    for round_up in (True, False):
        for stride in (2, 4, 8, 16, 32):
            expected = -(-size // stride) if round_up else size // stride
            if feature_size == expected:
                return stride
    return None


def _short_stride(size, feature_size):
    """The stride whose `size / stride` `feature_size` falls 1 to 3 pixels
    short of, as unpadded convolutions make it (Xception: 256 -> 127 and
    125 at stride 2), or `None`."""
    for stride in (2, 4, 8, 16, 32):
        if 0 < size // stride - feature_size <= 3 < size // stride:
            return stride
    return None


def preprocess(x, preprocessing):
    """Maps [0, 255] RGB images as the encoder's pretrained weights expect."""
    if preprocessing is None:
        return x
    if preprocessing == "tf":
        return x / 127.5 - 1.0
    if preprocessing == "torch":
        mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
        std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
        return (x / 255.0 - mean) / std
    # "caffe": RGB to BGR, minus the ImageNet mean.
    mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
    return ops.flip(x, axis=-1) - mean
