"""Class ids for one image of any size, at the image's own size."""

import numpy as np

from seglayers._masks import model_predicted_ids, model_threshold
from seglayers._sizes import check_size_pair
from seglayers._validation import check_bool, check_rate
from seglayers.inference._checks import (
    check_channels,
    check_model,
    check_numbers,
    check_one_output,
    check_smallest_size,
    image_array,
    model_spatial_dims,
)
from seglayers.inference.predict_tiled import predict_checked


def predict_mask(model, image, image_size, tiling=True, overlap=0.25, threshold=None):
    """Predicts the class of every pixel of one image, at its own size.

    The model sees images of `image_size`, the size it trained on. An
    image larger than that (in height or width) is predicted at its own
    resolution in overlapping tiles of `image_size` (`predict_tiled`), so
    that small objects keep their pixels (an axis shorter than the model
    takes is zero-padded at its far edge to the tile); any other image, or every image
    with `tiling=False`, is resized to `image_size` (bilinear, antialiased),
    predicted, and its class ids resized back with nearest neighbour, which
    never makes up a class.

    Args:
        model: a Keras model that maps images to per-pixel scores at its
            input's size, such as a `seglayers.SegmentationModel`.
        image: array `(height, width, channels)` of any height and width,
            as the model expects its inputs (e.g. `[0, 255]` for a model
            with `rescale=1 / 255`).
        image_size: int or `(height, width)`: the size the model trained on.
        tiling: bool, whether to tile images larger than `image_size`
            rather than shrink them. Defaults to `True`.
        overlap: float in [0, 1), the fraction of a tile shared with the next
            one when tiling. Defaults to 0.25.
        threshold: float or `None`, where one sigmoid channel turns to class
            1. `None` (the default) takes 0 for a model that says it outputs
            logits (`output_activation=None`), else 0.5.

    Returns:
        An int32 numpy array `(height, width)` of class ids: the arg-max of
        the scores, or, for one sigmoid channel, 1 where it is above
        `threshold`; -1 (no class) where the model's
        scores are NaN (e.g. weights that a diverged training made NaN),
        never a class made up from them.

    Example:

    >>> import seglayers
    >>> model = seglayers.UNet(3, filters=4, depth=2, rescale=1 / 255)
    >>> image = np.random.default_rng(0).uniform(0, 255, (50, 70, 3))
    >>> mask = predict_mask(model, image, image_size=32)  # in 32x32 tiles
    >>> mask.shape, mask.dtype.name, bool(mask.max() < 3)
    ((50, 70), 'int32', True)
    """
    import keras

    check_model(model, "predict_mask")
    image = image_array(image)
    if model_spatial_dims(model) != 2:
        raise ValueError(
            "`predict_mask` segments images, and this model takes volumes "
            "(spatial_dims=3): use "
            "`seglayers.predict_tiled(model, volume, tile_size)` and the "
            "arg-max of its scores."
        )
    if image.ndim != 3:
        raise ValueError(
            "`image` must be one image `(height, width, channels)`; call "
            "`predict_mask` once per image. "
            f"Received: image of shape {image.shape}"
        )
    if 0 in image.shape:
        # TensorFlow's resize failed in ScaleAndTranslate; tiles gave (0, W).
        raise ValueError(
            "`image` has an empty axis: there is nothing to segment. "
            f"Received: image of shape {image.shape}"
        )
    height, width = check_size_pair(
        "image_size",
        image_size,
        "the size the model trained on: a positive int or a pair (height, width)",
    )
    tiling = check_bool("tiling", tiling)
    check_rate("overlap", overlap)
    smallest = check_smallest_size("image_size", image_size, (height, width), model)
    threshold = model_threshold(model, threshold)  # before any prediction
    # Before the cast, which drops imaginary parts; None: the cast is to
    # float32 whatever the model takes.
    check_numbers(image, None)
    image = image.astype("float32", copy=False)
    if tiling and (image.shape[0] > height or image.shape[1] > width):
        # An axis shorter than the model takes (a thin strip) is zero-padded
        # to the tile there; any other is tiled at its own length.
        check_channels(model, image)
        scores = predict_checked(model, image, (height, width), smallest, overlap)
        return model_predicted_ids(model, scores[None], threshold)[0].astype("int32")
    resized = keras.ops.image.resize(
        image, (height, width), interpolation="bilinear", antialias=True
    )
    scores = model.predict_on_batch(keras.ops.expand_dims(resized, 0))
    scores = check_one_output(scores, "predict_mask")
    ids = model_predicted_ids(model, scores, threshold)[0]
    return _resize_nearest(ids, image.shape[:2]).astype("int32")


def _resize_nearest(ids, size):
    """`ids` `(h, w)` resized to `size` by nearest neighbour, sampling at
    pixel centres (as PIL does): every output id is one of the input's."""
    rows = ((np.arange(size[0]) + 0.5) * ids.shape[0] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * ids.shape[1] / size[1]).astype(int)
    return ids[rows[:, None], cols]
