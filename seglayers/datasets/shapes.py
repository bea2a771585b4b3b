"""Shapes: a synthetic segmentation data set made on the fly.

Each image holds several random circles, squares and triangles (they overlap;
later ones are drawn on top) in random colours on a textured, noisy
background; the mask gives the exact class of every pixel. Colours say
nothing about the class, so a model has to learn the shapes themselves.
Everything is made in numpy from one seed, so the same arguments always give
the same data.
"""

import math
import os

import numpy as np

from seglayers._sizes import sizes
from seglayers._validation import check_positive_int, check_seed, is_int

CLASS_NAMES = ("background", "circle", "square", "triangle")

_MAX_SHAPES = 5
_CHUNK = 64  # images per vectorized background/noise step


def load_data(num_samples=1000, image_size=(128, 128), num_classes=4, seed=0):
    """Generates the shapes data set.

    Args:
        num_samples: int, the number of images. Defaults to 1000.
        image_size: `(height, width)` of the images, each at least 16.
            Defaults to `(128, 128)`.
        num_classes: int, 2 to 4: background plus the first
            `num_classes - 1` of circle, square and triangle. Defaults to 4.
        seed: int >= 0, the random seed; the same seed gives the same data
            (`None`: different data each call). Defaults to 0.

    Returns:
        A tuple `(images, masks)`: images float32 `(num_samples, height,
        width, 3)` in [0, 255], as Keras image utilities give them, and masks
        int32 `(num_samples, height, width, 1)` of class ids, 0 for
        background. `CLASS_NAMES[:num_classes]` names the classes.

    Example:

    >>> images, masks = load_data(num_samples=8, image_size=(32, 32))
    >>> images.shape, masks.shape, sorted(np.unique(masks).tolist())
    ((8, 32, 32, 3), (8, 32, 32, 1), [0, 1, 2, 3])
    """
    num_samples = check_positive_int("num_samples", num_samples)
    if not is_int(num_classes) or not 2 <= num_classes <= 4:
        raise ValueError(
            "`num_classes` must be 2, 3 or 4 (background plus up to three "
            f"shapes: circle, square, triangle). Received: num_classes={num_classes!r}"
        )
    height, width = _check_image_size(image_size)
    check_fits_in_memory(num_samples, (height, width), channels=3)
    rng = np.random.default_rng(check_seed("seed", seed))
    images = np.empty((num_samples, height, width, 3), np.float32)
    masks = np.zeros((num_samples, height, width, 1), np.int32)
    noise = np.empty((min(_CHUNK, num_samples), height, width, 1), np.float32)
    # Chunk by chunk, in place: a chunk stays in cache between the steps, and
    # no full-size temporaries are made (first-touching new memory is a large
    # part of the cost).
    for start in range(0, num_samples, _CHUNK):
        stop = min(start + _CHUNK, num_samples)
        chunk, chunk_noise = images[start:stop], noise[: stop - start]
        _background(rng, chunk)
        _draw_shapes(rng, chunk, masks[start:stop, ..., 0], num_classes)
        # Grey uniform noise in [-24, 24): cheap, and enough to hide edges'
        # exact colours.
        rng.random(dtype=np.float32, out=chunk_noise)
        chunk_noise -= 0.5
        chunk_noise *= 48
        chunk += chunk_noise
        np.clip(chunk, 0, 255, out=chunk)
    return images, masks


def check_fits_in_memory(num_samples, size, channels):
    """Raises `MemoryError` up front where float32 samples of `size` and
    `channels` and their int32 masks need more than the machine's memory.
    Linux grants such arrays lazily, so the fill got the process killed
    (out of memory) instead of an error."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # No such query here.
        return
    needed = num_samples * math.prod(size) * 4 * (channels + 1)
    if needed > total:
        raise MemoryError(
            f"{num_samples} samples of {'x'.join(map(str, size))} need "
            f"{needed / 2**30:.1f} GiB, more than this machine's "
            f"{total / 2**30:.1f} GiB of memory: ask for fewer or smaller ones."
        )


def _check_image_size(image_size):
    image_size = sizes(image_size)
    if (
        not isinstance(image_size, (list, tuple))
        or len(image_size) != 2
        or not all(is_int(s) and s >= 16 for s in image_size)
    ):
        raise ValueError(
            "`image_size` must be a pair of ints `(height, width)`, each at "
            f"least 16, e.g. (128, 128). Received: image_size={image_size!r}"
        )
    return tuple(int(s) for s in image_size)


def _background(rng, out):
    """Fills `out` (n, H, W, 3) with smooth random colour fields.

    4×4 random colours per image, bilinearly resized as two small matrix
    products (separable).
    """
    n, height, width, _ = out.shape
    coarse = rng.uniform(0, 255, size=(n, 4, 4, 3)).astype(np.float32)
    rows = _interpolation_matrix(height, 4)  # (H, 4)
    cols = _interpolation_matrix(width, 4)  # (W, 4)
    field = np.einsum("hi,nijc->nhjc", rows, coarse)
    np.einsum("wj,nhjc->nhwc", cols, field, out=out, optimize=True)


def _interpolation_matrix(size, coarse):
    """`(size, coarse)` weights of linear interpolation over `coarse` knots."""
    position = np.linspace(0, coarse - 1, size, dtype=np.float32)
    lower = np.minimum(position.astype(int), coarse - 2)
    frac = position - lower
    weights = np.zeros((size, coarse), np.float32)
    weights[np.arange(size), lower] = 1 - frac
    weights[np.arange(size), lower + 1] = frac
    return weights


def _draw_shapes(rng, images, masks, num_classes):
    """Paints 2 to 5 random shapes into each image (H, W, 3) and mask (H, W)."""
    n, height, width = masks.shape
    scale = min(height, width)
    # Every random number for the chunk at once: per-shape calls cost more
    # than the drawing.
    counts = rng.integers(2, _MAX_SHAPES + 1, size=n)
    shape = (n, _MAX_SHAPES)
    kinds = rng.integers(1, num_classes, size=shape)
    centres = rng.uniform(0, 1, size=shape + (2,)) * (height, width)
    radii = rng.uniform(0.1, 0.25, size=shape) * scale
    angles = rng.uniform(0, 2 * np.pi, size=shape)
    colours = rng.uniform(0, 255, size=shape + (3,)).astype(np.float32)
    rows = np.arange(height, dtype=np.float32)
    cols = np.arange(width, dtype=np.float32)
    for i in range(n):
        for j in range(counts[i]):
            (cy, cx), radius = centres[i, j], radii[i, j]
            # Only the shape's bounding box is computed.
            top, bottom = max(int(cy - radius), 0), min(int(cy + radius) + 1, height)
            left, right = max(int(cx - radius), 0), min(int(cx + radius) + 1, width)
            dy = rows[top:bottom, None] - cy
            dx = cols[None, left:right] - cx
            inside = _inside(kinds[i, j], dy, dx, radius, angles[i, j])
            mask_box = masks[i, top:bottom, left:right]
            image_box = images[i, top:bottom, left:right]
            mask_box[inside] = kinds[i, j]
            image_box[inside] = colours[i, j]


def _inside(kind, dy, dx, radius, angle):
    """Boolean mask of the box pixels inside a shape of `kind`."""
    if kind == 1:
        return dx * dx + dy * dy <= radius * radius
    # Coordinates in the shape's rotated frame.
    cos, sin = np.cos(angle), np.sin(angle)
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    if kind == 2:
        half = radius * 0.75
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # An equilateral triangle: inside three half-planes at distance r / 2
    # from the centre, facing 120° apart.
    inside = u <= radius * 0.5
    for theta in (2 * np.pi / 3, 4 * np.pi / 3):
        inside &= u * np.cos(theta) + v * np.sin(theta) <= radius * 0.5
    return inside
