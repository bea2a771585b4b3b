"""Segmentation of images larger than memory, in overlapping tiles."""

import numpy as np

from seglayers._validation import (
    check_choice,
    check_positive_int,
    check_rate,
    check_size_pair,
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
    """Predicts one image of any size in overlapping tiles.

    The image is cut into `tile_size` tiles that overlap by `overlap` of a
    tile, the last row and column aligned with the image's far edges (so no
    tile reaches outside the image, and the image's borders get the same
    zero-padded context as in a whole-image prediction). Tiles are predicted
    `batch_size` at a time and blended: each tile's output is weighted by a
    Gaussian window (σ = tile / 8 along each axis, as in nnU-Net) that trusts
    tile centres over tile edges, and the weighted sum is divided by the
    summed weights.
    An image smaller than a tile is predicted in one tile of its own size.

    Memory holds the image and the float32 `(height, width, classes)` result,
    plus one batch of tiles through the model: the network's activations
    grow with the tile and batch size only, not with the image as in a
    whole-image `model.predict` (whose activations are several times the
    image per layer).

    Args:
        model: a fully convolutional Keras model whose output has its input's
            height and width, such as `UNet`.
        image: array `(height, width, channels)`, as the model expects its
            inputs (e.g. float32 in [0, 255] for a `UNet(rescale=1 / 255)`).
        tile_size: int or `(height, width)`, the size of the tiles; a size
            the model trained on is best.
        overlap: float in [0, 1), the fraction of a tile shared with the next
            one. Defaults to 0.25.
        batch_size: int, tiles per model call. Defaults to 8.
        blend: `"gaussian"` (the default) or `"constant"` (plain averaging).
        verbose: `"auto"`, 0 or 1: 1 shows a progress bar over the batches;
            `"auto"` shows it for more than one batch.

    Returns:
        A float32 numpy array `(height, width, channels_out)`: the model's
        output (probabilities for a softmax `UNet`) for the whole image.
        `seglayers.callbacks.mask_visualizer.predicted_ids` or an arg-max
        over the last axis gives class ids.

    Example:

    >>> import seglayers
    >>> model = seglayers.UNet(3, filters=4, depth=2)
    >>> image = np.random.default_rng(0).uniform(size=(50, 70, 3))
    >>> predict_tiled(model, image, tile_size=32, verbose=0).shape
    (50, 70, 3)
    """
    import keras

    # Numpy stays as it is: no copy of an image that may be large.
    image = keras.ops.convert_to_numpy(image) if keras.ops.is_tensor(image) else image
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(
            "`image` must be one image `(height, width, channels)`; call "
            "`predict_tiled` once per image of a batch. "
            f"Received: image of shape {image.shape}"
        )
    tile_height, tile_width = check_size_pair("tile_size", tile_size)
    # e.g. 0.25: a quarter of a tile shared with its neighbour.
    check_rate("overlap", overlap)
    check_positive_int("batch_size", batch_size)
    check_choice("blend", blend, BLENDS)
    check_choice("verbose", verbose, ("auto", 0, 1))

    height, width = image.shape[:2]
    tile_height, tile_width = min(tile_height, height), min(tile_width, width)
    tops = _starts(height, tile_height, overlap)
    lefts = _starts(width, tile_width, overlap)
    corners = [(top, left) for top in tops for left in lefts]
    # The window is separable (rows × columns) and the tiles form a grid, so
    # the summed weights are the product of two 1-D sums: no full-size
    # weight map to keep or update per tile.
    row_window = _window(tile_height, blend)
    col_window = _window(tile_width, blend)
    window = np.outer(row_window, col_window)[..., None]

    num_batches = -(-len(corners) // batch_size)
    if verbose == "auto":
        verbose = int(num_batches > 1)
    progress = keras.utils.Progbar(num_batches, unit_name="batch") if verbose else None
    total = None
    tiles = np.zeros(
        (batch_size, tile_height, tile_width, image.shape[-1]), image.dtype
    )
    for batch_start in range(0, len(corners), batch_size):
        batch = corners[batch_start : batch_start + batch_size]
        # Always full batches (the rest zeros), so the model compiles once.
        for i, (top, left) in enumerate(batch):
            tiles[i] = image[top : top + tile_height, left : left + tile_width]
        tiles[len(batch) :] = 0
        outputs = keras.ops.convert_to_numpy(model.predict_on_batch(tiles))
        if outputs.shape[1:3] != (tile_height, tile_width):
            raise ValueError(
                "`predict_tiled` needs a model whose output has its input's "
                f"height and width; tiles of {(tile_height, tile_width)} gave "
                f"outputs of {outputs.shape[1:3]}."
            )
        if total is None:
            total = np.zeros((height, width, outputs.shape[-1]), np.float32)
        for output, (top, left) in zip(outputs, batch):
            rows, cols = slice(top, top + tile_height), slice(left, left + tile_width)
            total[rows, cols] += output * window
        if progress is not None:
            progress.add(1)
    total /= np.outer(
        _coverage(height, tops, row_window), _coverage(width, lefts, col_window)
    )[..., None]
    return total


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
