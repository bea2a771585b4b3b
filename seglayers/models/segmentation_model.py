"""`SegmentationModel`: the base every seglayers architecture builds on."""

import keras
from keras import ops

from seglayers._api import register
from seglayers._validation import (
    check_bool,
    check_choice,
    check_positive_int,
    check_rescale,
    check_spatial_dims,
)
from seglayers.inference.export import export_arguments, restore_onnx_output_rank
from seglayers.layers._spatial import LAYERS, match_spatial_size, upsample_bilinear_2x
from seglayers.models import _steps, encoders
from seglayers.models._checks import (
    check_input_shape,
    check_model_arguments,
    check_preprocessing,
    check_save_path,
    loading,
    model_from_config,
    nan_when_too_small,
)

OUTPUT_ACTIVATIONS = ("auto", "softmax", "sigmoid", None)
# The spatial size at which `build` traces `call` where the input's is free.
_TRACE_SIZE = 256


@register
class SegmentationModel(keras.Model):
    """Base class of the seglayers segmentation models: encoder → decoder → head.

    `call` runs `inputs -> rescale -> encode -> decode -> resize to the
    input -> head`. This base owns every step but the decoder: the input
    checks, `rescale` and the encoder's preprocessing, the encoder (resolved
    from a name, a `keras.Model` or a keras-hub backbone into a feature
    pyramid, frozen with its batch statistics when
    `encoder_trainable=False`), the head (a pointwise convolution in
    float32 under mixed precision, with its activation), the resize of the
    decoder's features to the input's size, the encoder's (de)serialization,
    `build` (by tracing `call` once) and the serving defaults of `export`.

    A subclass (an architecture) does three things:

    1. in `__init__`, calls `super().__init__(...)` with the base's
       arguments, makes its decoder's layers, then calls `self.make_head()`
       (last: the order in which layers are made is the order of their
       weights in saved files);
    2. implements `decode(pyramid, training)`: `pyramid` is a dict of
       feature maps by level, `"P{k}"` at stride `2**k` (keras-hub's
       `pyramid_outputs` contract: `"P1"` at stride 2 to `"P5"` at stride
       32; levels the encoder lacks are absent), and `decode` returns
       features at stride 1, or at stride `2**k` if `output_level` is `k`
       (then bilinearly upsampled by the base);
    3. adds its own arguments to `get_config`.

    A subclass may also override `encode(x, training)` to bring its own
    encoder when `encoder=None` (as `UNet` does with its contracting path,
    whose levels start at `"P0"`, stride 1); the base's `encode` needs an
    `encoder`.

    Args:
        num_classes: int, the channels of the output. 1 with a sigmoid for
            binary segmentation.
        depth: int, the deepest pyramid level the decoder reads (features
            at stride `2**depth`); inputs must be at least `2**depth` in
            every spatial dimension. Defaults to 5.
        output_activation: `"auto"` (softmax for several classes, sigmoid
            for one), `"softmax"`, `"sigmoid"` or `None` for logits.
            Defaults to `"auto"`.
        encoder: `None` (the subclass's own encoder), a name from
            `seglayers.models.encoders.ENCODERS`, a functional `keras.Model`
            or a keras-hub backbone with `pyramid_outputs`.
        encoder_weights: `None`, `"imagenet"` or the path of a weights
            file, for an encoder given by name. Defaults to `None`.
        encoder_trainable: bool, `False` freezes the encoder (weights and
            batch statistics). Defaults to `True`.
        encoder_preprocessing: `"auto"`, `"caffe"`, `"tf"`, `"torch"` or
            `None`: how [0, 255] inputs are mapped before the encoder.
            Defaults to `"auto"` (what a named encoder's weights expect).
        rescale: float or `None`, a factor applied to the inputs first.
            Defaults to `None`.
        spatial_dims: 2 for images `(batch, height, width, channels)`, 3 for
            volumes `(batch, depth, height, width, channels)`. Defaults to 2.
        **kwargs: `keras.Model` keyword arguments, such as `name`, `dtype`.

    Example: a complete architecture, a decoder that upsamples the deepest
    features and adds each shallower level.

    >>> class TinyDecoderModel(SegmentationModel):
    ...     def __init__(self, num_classes, filters=8, **kwargs):
    ...         super().__init__(num_classes, depth=2, **kwargs)
    ...         self.down = [keras.layers.Conv2D(filters, 3, strides=2,
    ...                      padding="same") for _ in range(2)]
    ...         self.up = keras.layers.UpSampling2D(2)
    ...         self.filters = filters
    ...         self.make_head()
    ...     def encode(self, x, training=None):
    ...         pyramid = {"P0": x}
    ...         for level, conv in enumerate(self.down, start=1):
    ...             pyramid[f"P{level}"] = x = conv(x)
    ...         return pyramid
    ...     def decode(self, pyramid, training=None):
    ...         return self.up(self.up(pyramid["P2"]) + pyramid["P1"])
    ...     def get_config(self):
    ...         return {**super().get_config(), "filters": self.filters}
    >>> model = TinyDecoderModel(num_classes=3)
    >>> tuple(model(keras.ops.ones((1, 32, 32, 3))).shape)
    (1, 32, 32, 3)
    """

    def __init__(
        self,
        num_classes,
        depth=5,
        output_activation="auto",
        encoder=None,
        encoder_weights=None,
        encoder_trainable=True,
        encoder_preprocessing="auto",
        rescale=None,
        spatial_dims=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = check_positive_int("num_classes", num_classes)
        depth = check_positive_int("depth", depth)
        check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        encoder_trainable = check_bool("encoder_trainable", encoder_trainable)
        check_choice(
            "encoder_preprocessing",
            encoder_preprocessing,
            ("auto",) + encoders.PREPROCESSINGS,
        )
        rescale = check_rescale(rescale)
        spatial_dims = check_spatial_dims(spatial_dims)
        check_model_arguments(
            type(self).__name__,
            num_classes,
            output_activation,
            encoder,
            encoder_weights,
            encoder_trainable,
            encoder_preprocessing,
            spatial_dims,
        )

        # === Layers ===
        self.rescaling = None
        if rescale is not None:
            # In float32 under any policy: see `input_dtype`.
            self.rescaling = keras.layers.Rescaling(
                rescale, dtype="float32", name="rescaling"
            )
        self.encoder = None
        self.encoder_levels = ()
        preprocessing = None
        if encoder is not None:
            self.encoder, strides, preprocessing = encoders.resolve(
                encoder,
                depth,
                weights=encoder_weights,
                model_name=type(self).__name__,
                dtype=self.dtype_policy,
            )
            if not loading():  # A saved one keeps its flags (fine-tuning).
                self.encoder.trainable = encoder_trainable
            self.encoder_levels = tuple(encoders.level_name(s) for s in strides)
        if encoder_preprocessing != "auto":
            channels = self.encoder.inputs[0].shape[-1] if self.encoder else None
            preprocessing = check_preprocessing(encoder_preprocessing, channels)
        self.head = None
        self.head_activation = None

        # === Config ===
        self.num_classes = num_classes
        self.depth = depth
        self.output_activation = output_activation
        self.encoder_weights = encoder_weights
        self.encoder_trainable = encoder_trainable
        self.encoder_preprocessing = preprocessing
        self.rescale = rescale
        self.spatial_dims = spatial_dims
        # Features of the decoder's output are at stride 2**output_level.
        self.output_level = 0
        self.input_channels = None
        if self.encoder is not None:
            self.input_channels = self.encoder.inputs[0].shape[-1]

    def make_head(self):
        """Makes the head: a pointwise convolution to `num_classes` channels
        and the output activation, both computing in float32 under mixed
        precision (for a stable softmax and losses). Call it last in a
        subclass's `__init__`."""
        if self.output_activation == "auto":
            activation = "softmax" if self.num_classes > 1 else "sigmoid"
        else:
            activation = self.output_activation or "linear"
        conv = LAYERS[self.spatial_dims].conv
        self.head = conv(self.num_classes, 1, dtype="float32", name="head")
        self.head_activation = keras.layers.Activation(
            activation, dtype="float32", name="head_activation"
        )

    def encode(self, x, training=None):
        """The encoder's feature pyramid of `x`: `{"P1": ..., "P5": ...}`."""
        if self.encoder is None:
            raise NotImplementedError(
                f"`{type(self).__name__}` has no `encoder`: pass one (e.g. "
                "encoder='resnet50') or override `encode` with the model's own."
            )
        # A tensor, not numpy: Keras's loading calls the model on numpy
        # arrays on JAX, and a functional encoder then warns that the
        # structure of its inputs does not match (tests/compatibility_test.py).
        if not isinstance(x, keras.KerasTensor):
            x = ops.convert_to_tensor(x)
        x = encoders.preprocess(x, self.encoder_preprocessing)
        # A frozen encoder also keeps its batch statistics.
        features = self.encoder(
            x, training=training if self.encoder_trainable else False
        )
        if not isinstance(features, (list, tuple)):
            # A functional model of one output returns it bare, and zip
            # would walk its batch axis (one level: depth=1, or ConvNeXt's
            # stride 4 at depth 2).
            features = [features]
        return dict(zip(self.encoder_levels, features))

    def decode(self, pyramid, training=None):
        """The decoder: features at stride `2**output_level` from `pyramid`,
        a dict of features by level name (`"P3"`: stride 8)."""
        raise NotImplementedError(
            f"`{type(self).__name__}` must implement `decode(pyramid, training)`."
        )

    def _check_input_shape(self, shape):
        return check_input_shape(
            shape,
            self.input_channels,
            self.depth,
            self.encoder,
            type(self).__name__,
            self.spatial_dims,
        )

    def build(self, input_shape):
        shape = self._check_input_shape(input_shape)
        if self.head is None:
            raise ValueError(
                f"`{type(self).__name__}` has no head: call `self.make_head()` "
                "at the end of its `__init__`."
            )
        self.input_channels = shape[-1]
        # Every sublayer builds itself when `call` meets it with a symbolic
        # input, in the order `call` uses it: no shape walk to keep in step.
        # Free sizes are traced at a concrete one (no weight depends on it;
        # the resize to the input is then slicing and padding).
        fixed = encoders.input_size(self.encoder) if self.encoder else ()
        free = max(_TRACE_SIZE, 2**self.depth)
        traced = [s if isinstance(s, int) else free for s in shape[1:-1]]
        for axis, size in enumerate(fixed):
            traced[axis] = size if size is not None else traced[axis]
        self.call(keras.KerasTensor((shape[0], *traced, shape[-1])))
        self.built = True

    @property
    def input_dtype(self):
        """Images come in as float32 under any dtype policy: `rescale` and
        an encoder's preprocessing run in float32, and the layers after them
        cast to their compute dtype. Cast to float16 first, a 16-bit image's
        65535 (anything from 65520) was infinite, and one such pixel made
        most of a `mixed_float16` model's output NaN. Without `rescale` or
        preprocessing, the first convolution still takes such values in
        float16: pass `rescale` for them. An exported model takes float32
        too (`any_size_signature`)."""
        return "float32"

    def call(self, inputs, training=None):
        self._check_input_shape(getattr(inputs, "shape", inputs))  # or a dict
        x = inputs
        if "float" not in keras.backend.standardize_dtype(x.dtype):
            # uint8 images as read from files: Keras casts only floats to the
            # input dtype, and TensorFlow's convolutions refuse integers.
            x = ops.cast(x, self.input_dtype)
        if self.rescaling is not None:
            x = self.rescaling(x)
        x = self.decode(self.encode(x, training=training), training=training)
        x = self.resize_to_input(x, inputs)
        outputs = self.head_activation(self.head(x))
        return nan_when_too_small(outputs, inputs, self.depth)

    def fit(self, x=None, *args, **kwargs):
        positional = args[8] if len(args) > 8 else None  # fit's 10th parameter
        class_weight = kwargs.get("class_weight", positional)
        _steps.check_no_class_weight(self.name, class_weight)
        with _steps.step_call(self, x, "train_function") as x:
            return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        with _steps.step_call(self, x, "test_function") as x:
            return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        with _steps.step_call(self, x, "predict_function") as x:
            return super().predict(x, *args, **kwargs)

    def train_on_batch(
        self, x, y=None, sample_weight=None, class_weight=None, return_dict=False
    ):
        _steps.check_no_class_weight(self.name, class_weight, "train_on_batch")
        with _steps.step_call(self, x, "train_function", on_batch=True):
            return super().train_on_batch(x, y, sample_weight, None, return_dict)

    def test_on_batch(self, x, *args, **kwargs):
        with _steps.step_call(self, x, "test_function", on_batch=True):
            return super().test_on_batch(x, *args, **kwargs)

    def predict_on_batch(self, x):
        with _steps.step_call(self, x, "predict_function", on_batch=True):
            return super().predict_on_batch(x)

    def resize_to_input(self, x, inputs):
        """`x`, the decoder's features, at the spatial size of `inputs`:
        bilinearly upsampled from stride `2**output_level`, then cropped or
        zero-padded at the far edges (an encoder's padding may round sizes
        up on the way down)."""
        for _ in range(self.output_level):
            x = upsample_bilinear_2x(x)
        return match_spatial_size(x, inputs)

    def compute_output_shape(self, input_shape):
        shape = self._check_input_shape(input_shape)
        return shape[:-1] + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "depth": self.depth,
                "output_activation": self.output_activation,
                "encoder": None,
                "encoder_weights": self.encoder_weights,
                "encoder_trainable": self.encoder_trainable,
                "encoder_preprocessing": self.encoder_preprocessing,
                "rescale": self.rescale,
                "spatial_dims": self.spatial_dims,
            }
        )
        if self.encoder is not None:
            # The feature model itself, so that loading rebuilds it without
            # downloading anything; the file's weights fill it.
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
            config["encoder_weights"] = None
        return config

    @classmethod
    def from_config(cls, config):
        return model_from_config(cls, config)

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=None,
        input_signature=None,
        **kwargs,
    ):
        """Exports the model for serving, as `keras.Model.export` does, but by
        default for inputs of any batch size and spatial size
        (`(None, None, None, channels)`), not only the size it was trained on;
        and with `format="litert"`, with built-in TFLite ops only. Pass
        `input_signature` (or, for TFLite, `target_spec`) to choose otherwise.
        An ONNX file on TensorFlow is checked for the stray leading axis
        tf2onnx sometimes leaves on one-channel outputs (see
        `seglayers.inference.export.restore_onnx_output_rank`).
        """
        input_signature, kwargs = export_arguments(
            self, format, input_signature, kwargs
        )
        result = super().export(
            filepath,
            format=format,
            verbose=verbose,
            input_signature=input_signature,
            **kwargs,
        )
        if format == "onnx" and keras.backend.backend() == "tensorflow":
            # Outputs `(batch, *spatial, classes)`, whatever the signature.
            rank = getattr(self, "spatial_dims", 2) + 2
            restore_onnx_output_rank(filepath, rank=rank)
        return result

    def save(self, filepath, *args, **kwargs):
        check_save_path(type(self).__name__, filepath)
        return super().save(filepath, *args, **kwargs)
