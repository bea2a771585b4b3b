"""Segmentation of images larger than memory, in overlapping tiles."""

import functools
import itertools

import numpy as np

from seglayers._sizes import check_spatial_size
from seglayers._validation import (
    check_choice,
    check_positive_int,
    check_rate,
)
from seglayers.inference._checks import (
    check_channels,
    check_model,
    check_numbers,
    check_one_output,
    check_smallest_size,
    image_array,
    model_spatial_dims,
)

BLENDS = ("gaussian", "constant")


def predict_tiled(
    model,
    image,
    tile_size,
    overlap=0.25,
    batch_size=8,
    blend="gaussian",
    verbose="auto",
):
    """Predicts one image or volume of any size in overlapping tiles.

    The image is cut into `tile_size` tiles that overlap by `overlap` of a
    tile, the last tile along each axis aligned with the image's far edge (so
    no tile reaches outside the image, and the image's borders get the same
    zero-padded context as in a whole-image prediction). Tiles are predicted
    `batch_size` at a time and blended: each tile's output is weighted by a
    Gaussian window (σ = tile / 8 along each axis, as in nnU-Net and MONAI's
    `sliding_window_inference`) that trusts tile centres over tile edges, and
    the weighted sum is divided by the summed weights.
    An image smaller than a tile is predicted in one tile of its own size,
    or, for a model of a fixed input size (`keras.Input((256, 256, 3))`, or
    an encoder built for one), zero-padded at its far edges to the tile. An
    axis shorter than a seglayers model's smallest input (`2**depth`, e.g. a
    scan of 3 slices for a `depth=2` model) is zero-padded at its far edge
    to the tile's length, for any model. An image of NaN or infinite values
    (`ValueError`) or of no numbers (`TypeError`) is refused.
    Volumes `(depth, height, width, channels)`, for a model of volumes (such
    as `UNet(..., spatial_dims=3)`), are cut into 3-D tiles the same way.

    Memory holds the image and the float32 result (its size, with the
    output's channels), plus one batch of tiles through the model: the
    network's activations grow with the tile and batch size only, not with
    the image as in a whole-image `model.predict` (whose activations are
    several times the image per layer).

    Args:
        model: a fully convolutional Keras model whose output has its input's
            spatial size, such as `UNet`. Its `spatial_dims` (or its input's
            rank) says whether it takes images or volumes; failing both, the
            rank of `image` does.
        image: array `(height, width, channels)`, or `(depth, height, width,
            channels)` for a model of volumes, as the model expects its inputs
            (e.g. float32 in [0, 255] for a `UNet(rescale=1 / 255)`).
        tile_size: int, `(height, width)` or `(depth, height, width)`, the
            size of the tiles, at least a seglayers model's `2**depth`; a
            size the model trained on is best.
        overlap: float in [0, 1), the fraction of a tile shared with the next
            one. Defaults to 0.25.
        batch_size: int, tiles per model call, at most the power of two
            at or above the number of tiles (a last batch with room to
            spare is filled with zero tiles). Defaults to 8.
        blend: `"gaussian"` (the default) or `"constant"` (plain averaging).
        verbose: `"auto"`, 0 or 1: 1 shows a progress bar over the batches;
            `"auto"` shows it for more than one batch.

    Returns:
        A float32 numpy array of the image's spatial size and the output's
        channels: the model's output (probabilities for a softmax `UNet`) for
        the whole image, within the range of the tiles' outputs. An arg-max
        over the last axis gives class ids. A model that outputs integers
        (class ids) gets them unblended, in its dtype: each pixel the id
        of the tile whose window weighs most there (the first such tile
        on a tie).

    Example:

    >>> import seglayers
    >>> model = seglayers.UNet(3, filters=4, depth=2)
    >>> image = np.random.default_rng(0).uniform(size=(50, 70, 3))
    >>> predict_tiled(model, image, tile_size=32, verbose=0).shape
    (50, 70, 3)
    """
    check_model(model, "predict_tiled")
    image = image_array(image)
    # A model that does not say: as the image's rank says.
    rank = model_spatial_dims(model, unknown=image.ndim - 1)
    rank = rank if rank in (2, 3) else 2
    if image.ndim != rank + 1:
        raise ValueError(
            _SHAPE_ERRORS[rank] + f" Received: image of shape {image.shape}"
        )
    if 0 in image.shape:
        raise ValueError(
            "`image` has an empty axis: there is nothing to predict. "
            f"Received: image of shape {image.shape}"
        )
    tile = check_spatial_size("tile_size", tile_size, rank)
    # e.g. 0.25: a quarter of a tile shared with its neighbour.
    check_rate("overlap", overlap)
    batch_size = check_positive_int("batch_size", batch_size)
    check_choice("blend", blend, BLENDS)
    check_choice("verbose", verbose, ("auto", 0, 1))
    smallest = check_smallest_size("tile_size", tile_size, tile, model)
    check_channels(model, image)
    check_numbers(image, model)
    # A 4-D image for a model that does not say its rank: often one image
    # with a batch axis, which the model's 2-D layers refuse deep inside
    # ("'NDHWC' not in: 'NHWC', 'NCHW'"); its first call's failure says so.
    guessed = rank == 3 and model_spatial_dims(model, unknown=None) is None
    return predict_checked(
        model, image, tile, smallest, overlap, batch_size, blend, verbose, guessed
    )


def predict_checked(
    model,
    image,
    tile,
    smallest,
    overlap,
    batch_size=8,
    blend="gaussian",
    verbose=0,
    guessed=False,
):
    """`predict_tiled` on an image and arguments already checked (`predict_mask`
    checks its own: no second scan of the image for NaN), `smallest` from
    `check_smallest_size`; `guessed`: the image was taken for a volume by
    its rank alone."""
    size = image.shape[:-1]
    # A model of one input size takes no smaller tile, and a seglayers model
    # no tile below its smallest input (a scan of 3 slices, for a model that
    # halves it twice): zeros at the far edges make such an axis a tile
    # long, and the result is cut back.
    fixed = _fixed_size(model)
    padding = [
        (0, t - s if s < t and (fixed or s < smallest) else 0)
        for s, t in zip(size, tile)
    ]
    if any(after for _, after in padding):
        image = np.pad(image, padding + [(0, 0)])
    options = (tile, overlap, batch_size, blend, verbose, guessed)
    total = _predict_tiles(model, image, *options)
    return total[tuple(slice(0, s) for s in size)]


def _predict_on_batch(model, tiles, guessed):
    """`model.predict_on_batch(tiles)`; where `guessed`, a failure of the
    model (other than of memory) says the image was taken for a volume."""
    if not guessed:
        return model.predict_on_batch(tiles)
    try:
        return model.predict_on_batch(tiles)
    except Exception as error:
        # Out of memory (TensorFlow's ResourceExhaustedError, XLA's
        # RESOURCE_EXHAUSTED): the volume may be right, the tile too large.
        memory = isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)
        if memory or "ResourceExhausted" in type(error).__name__:
            raise
        shape = tiles.shape[1:]
        raise ValueError(
            "`predict_tiled` read `image` as a volume (depth, height, width, "
            "channels), as its rank says, since the model does not say whether "
            "it takes images or volumes, and the model failed on tiles of "
            f"shape {shape}. For one image, drop the batch axis (`image[0]`). "
            f"The model's error: {type(error).__name__}: "
            f"{str(error).strip()[:300]}"
        ) from error


def _predict_tiles(model, image, tile, overlap, batch_size, blend, verbose, guessed):
    """`predict_tiled` on an image at least a tile large where the model
    needs it to be, its arguments checked."""
    import keras

    size = image.shape[:-1]
    rank = len(size)
    tile = tuple(min(t, s) for t, s in zip(tile, size))
    starts = [_starts(s, t, overlap) for s, t in zip(size, tile)]
    corners = list(itertools.product(*starts))
    # The window is separable (one factor per axis) and the tiles form a
    # grid, so the summed weights are the product of 1-D sums: no full-size
    # weight map to keep or update per tile.
    windows = [_window(t, blend) for t in tile]
    window = functools.reduce(np.multiply.outer, windows)[..., None]

    # No batch much larger than the tiles: zero tiles would cost as much as
    # real ones (2 tiles of a volume in batches of 8 did 4 times the work).
    # A power of two, so that calls with other tile counts share few batch
    # shapes (each one a compilation on JAX).
    batch_size = min(batch_size, 1 << (len(corners) - 1).bit_length())
    num_batches = -(-len(corners) // batch_size)
    if verbose == "auto":
        verbose = int(num_batches > 1)
    progress = keras.utils.Progbar(num_batches, unit_name="batch") if verbose else None
    total = nearest = None
    low, high = np.inf, -np.inf
    tiles = np.zeros((batch_size,) + tile + image.shape[-1:], image.dtype)
    for batch_start in range(0, len(corners), batch_size):
        batch = corners[batch_start : batch_start + batch_size]
        boxes = [
            tuple(slice(c, c + t) for c, t in zip(corner, tile)) for corner in batch
        ]
        # Always full batches (the rest zeros): one batch shape per call.
        for i, box in enumerate(boxes):
            tiles[i] = image[box]
        tiles[len(batch) :] = 0
        outputs = _predict_on_batch(model, tiles, guessed and total is None)
        outputs = check_one_output(outputs, "predict_tiled")
        outputs = keras.ops.convert_to_numpy(outputs)
        if outputs.shape[1:-1] != tile:
            raise ValueError(_SIZE_ERRORS[rank].format(tile, outputs.shape[1:-1]))
        if total is None:
            # Class ids, which an average would make up (not "not floating":
            # numpy does not count bfloat16 as floating).
            integer = outputs.dtype == bool or np.issubdtype(outputs.dtype, np.integer)
            dtype = outputs.dtype if integer else np.float32
            total = np.zeros(size + outputs.shape[-1:], dtype)
            if integer:
                nearest = np.zeros(size + (1,), np.float32)
        for output, box in zip(outputs, boxes):
            if nearest is not None:
                # Each pixel takes the id of the tile it is most central in.
                closer = window > nearest[box]
                nearest[box] = np.where(closer, window, nearest[box])
                total[box] = np.where(closer, output, total[box])
            else:
                total[box] += output * window
        # NaN-blind: a NaN pixel stays NaN, and sets no bound.
        low = np.fmin(low, np.fmin.reduce(outputs[: len(batch)], axis=None))
        high = np.fmax(high, np.fmax.reduce(outputs[: len(batch)], axis=None))
        if progress is not None:
            progress.add(1)
    if nearest is not None:
        return total
    # Divided axis by axis, in place: no full-size map of summed weights.
    for axis, (length, axis_starts, axis_window) in enumerate(
        zip(size, starts, windows)
    ):
        coverage = _coverage(length, axis_starts, axis_window)
        total /= coverage.reshape((-1,) + (1,) * (rank - axis))
    # A weighted average lies within its values, but rounding can step out
    # (a sigmoid's 1.0 became 1.0000001, read as a logit): clip it back.
    if np.isfinite(low) and np.isfinite(high):
        np.clip(total, low, high, out=total)
    return total


_SHAPE_ERRORS = {
    2: "`image` must be one image `(height, width, channels)`; call "
    "`predict_tiled` once per image of a batch.",
    3: "`image` must be one volume `(depth, height, width, channels)` for a "
    "model of volumes; call `predict_tiled` once per volume of a batch.",
}
_SIZE_ERRORS = {
    2: "`predict_tiled` needs a model whose output has its input's height and "
    "width (a segmentation model that resizes its output to its input, as "
    "every seglayers model does): wrap one that does not in a model that "
    "resizes its output, or predict whole images. Received: tiles of {} gave "
    "outputs of {}",
    3: "`predict_tiled` needs a model whose output has its input's depth, "
    "height and width (a segmentation model that resizes its output to its "
    "input, as every seglayers model does): wrap one that does not in a model "
    "that resizes its output, or predict whole volumes. Received: tiles of {} "
    "gave outputs of {}",
}


def _fixed_size(model):
    """Whether `model` takes inputs of a fixed size along some spatial axis:
    a functional model built on `keras.Input((256, 256, 3))`, or a
    seglayers model over an encoder built for one size."""
    encoder = getattr(model, "encoder", None)
    try:
        inputs = (encoder or model).inputs[0]
    except (AttributeError, IndexError, TypeError, ValueError):
        return False  # A subclassed model: any size.
    return any(isinstance(size, int) for size in inputs.shape[1:-1])


def _starts(size, tile, overlap):
    """Tile offsets along one axis: every `stride`, the last at the far edge."""
    stride = max(1, tile - int(round(overlap * tile)))
    return list(range(0, size - tile, stride)) + [size - tile]


def _window(n, blend):
    """The weights of a tile's `n` rows (or columns), float32."""
    if blend == "constant":
        return np.ones(n, np.float32)
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    window = np.exp(-0.5 * (x / (n / 8)) ** 2)
    # Tile edges get little weight, never none: the image's own edges and
    # corners are covered by tile edges only.
    return np.maximum(window / window.max(), 1e-2).astype(np.float32)


def _coverage(size, starts, window):
    """The summed window weight of every pixel along one axis."""
    summed = np.zeros(size, np.float32)
    for start in starts:
        summed[start : start + len(window)] += window
    return summed
