"""Volumes: a synthetic 3-D segmentation data set made on the fly.

The 3-D counterpart of `shapes`: each volume holds several random spheres,
cubes and tori (randomly turned; they overlap, later ones drawn on top) in
random grey levels on a smooth, noisy background, like a scan with one
channel; the mask gives the exact class of every voxel. Grey levels say
nothing about the class, so a model has to learn the shapes themselves.
Each shape is 48 to 128 grey levels brighter or darker than what lies at
its centre before it is drawn, so that few hide in the noise (of ±32); the
background varies and shapes overlap, so parts of a shape can come closer
to what surrounds them (for seed 0 at 32³, a third of the shapes have over
a quarter of their voxels within 48 levels of what they cover).
Everything is made in numpy from one seed, so the same arguments always give
the same data.
"""

import numpy as np

from seglayers._sizes import sizes
from seglayers._validation import check_positive_int, check_seed, is_int
from seglayers.datasets.shapes import _interpolation_matrix, check_fits_in_memory

CLASS_NAMES = ("background", "sphere", "cube", "torus")

_MAX_SHAPES = 4
_CHUNK = 16  # volumes per vectorized background/noise step
# A torus's tube radius, as a share of its ring radius.
_TUBE = 0.5
# The least difference between a shape's grey level and what lies under it.
_MIN_CONTRAST = 48


def load_data(num_samples=100, volume_size=(32, 32, 32), num_classes=4, seed=0):
    """Generates the volumes data set.

    Args:
        num_samples: int, the number of volumes. Defaults to 100.
        volume_size: `(depth, height, width)` of the volumes, each at least 16.
            Defaults to `(32, 32, 32)`.
        num_classes: int, 2 to 4: background plus the first
            `num_classes - 1` of sphere, cube and torus. Defaults to 4.
        seed: int >= 0, the random seed; the same seed gives the same data
            (`None`: different data each call). Defaults to 0.

    Returns:
        A tuple `(volumes, masks)`: volumes float32 `(num_samples, depth,
        height, width, 1)` in [0, 255], and masks int32 `(num_samples,
        depth, height, width, 1)` of class ids, 0 for background.
        `CLASS_NAMES[:num_classes]` names the classes.

    Example:

    >>> volumes, masks = load_data(num_samples=8, volume_size=(16, 16, 16))
    >>> volumes.shape, masks.shape, sorted(np.unique(masks).tolist())
    ((8, 16, 16, 16, 1), (8, 16, 16, 16, 1), [0, 1, 2, 3])
    """
    num_samples = check_positive_int("num_samples", num_samples)
    if not is_int(num_classes) or not 2 <= num_classes <= 4:
        raise ValueError(
            "`num_classes` must be 2, 3 or 4 (background plus up to three "
            f"shapes: sphere, cube, torus). Received: num_classes={num_classes!r}"
        )
    size = _check_volume_size(volume_size)
    check_fits_in_memory(num_samples, size, channels=1)
    rng = np.random.default_rng(check_seed("seed", seed))
    volumes = np.empty((num_samples,) + size + (1,), np.float32)
    masks = np.zeros((num_samples,) + size + (1,), np.int32)
    noise = np.empty((min(_CHUNK, num_samples),) + size + (1,), np.float32)
    # Chunk by chunk, in place, as in `shapes`: no full-size temporaries.
    for start in range(0, num_samples, _CHUNK):
        stop = min(start + _CHUNK, num_samples)
        chunk, chunk_noise = volumes[start:stop], noise[: stop - start]
        _background(rng, chunk)
        _draw_shapes(rng, chunk, masks[start:stop, ..., 0], num_classes)
        # Uniform noise in [-32, 32): hides the exact grey level of edges.
        rng.random(dtype=np.float32, out=chunk_noise)
        chunk_noise -= 0.5
        chunk_noise *= 64
        chunk += chunk_noise
        np.clip(chunk, 0, 255, out=chunk)
    return volumes, masks


def _check_volume_size(volume_size):
    volume_size = sizes(volume_size)
    if (
        not isinstance(volume_size, (list, tuple))
        or len(volume_size) != 3
        or not all(is_int(s) and s >= 16 for s in volume_size)
    ):
        raise ValueError(
            "`volume_size` must be a triple of ints `(depth, height, width)`, "
            "each at least 16, e.g. (32, 32, 32). "
            f"Received: volume_size={volume_size!r}"
        )
    return tuple(int(s) for s in volume_size)


def _background(rng, out):
    """Fills `out` (n, D, H, W, 1) with smooth random grey fields: 4×4×4
    random levels, trilinearly resized as three small matrix products."""
    n, depth, height, width, _ = out.shape
    coarse = rng.uniform(0, 255, size=(n, 4, 4, 4)).astype(np.float32)
    field = np.einsum("di,nijk->ndjk", _interpolation_matrix(depth, 4), coarse)
    field = np.einsum("hj,ndjk->ndhk", _interpolation_matrix(height, 4), field)
    np.einsum("wk,ndhk->ndhw", _interpolation_matrix(width, 4), field, out=out[..., 0])


def _rotations(rng, count):
    """`count` random rotation matrices (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((count, 3, 3)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def _draw_shapes(rng, volumes, masks, num_classes):
    """Paints 2 to 4 random shapes into each volume (D, H, W, 1) and mask."""
    n = masks.shape[0]
    size = np.array(masks.shape[1:], np.float64)
    # Every random number for the chunk at once: per-shape calls cost more
    # than the drawing.
    counts = rng.integers(2, _MAX_SHAPES + 1, size=n)
    shape = (n, _MAX_SHAPES)
    kinds = rng.integers(1, num_classes, size=shape)
    centres = rng.uniform(0.2, 0.8, size=shape + (3,)) * size
    radii = rng.uniform(0.2, 0.35, size=shape) * size.min()
    rotations = _rotations(rng, n * _MAX_SHAPES).reshape(shape + (3, 3))
    # Each shape's grey level differs from what it is drawn on (at its
    # centre) by 48 to 128, brighter or darker at random (darker where
    # brighter would pass 255, and the reverse). With any level, one shape
    # in five hid in the noise; a mask that marks an invisible shape is
    # label noise.
    contrasts = rng.uniform(_MIN_CONTRAST, 128, size=shape)
    contrasts *= rng.choice((-1.0, 1.0), size=shape)
    grids = [np.arange(s, dtype=np.float32) for s in masks.shape[1:]]
    for i in range(n):
        for j in range(counts[i]):
            centre, radius = centres[i, j], radii[i, j]
            # Only the shape's bounding box (its circumscribed sphere's).
            low = np.maximum((centre - radius).astype(int), 0)
            high = np.minimum((centre + radius).astype(int) + 1, masks.shape[1:])
            box = tuple(slice(a, b) for a, b in zip(low, high))
            offsets = [g[s] - c for g, s, c in zip(grids, box, centre)]
            inside = _inside(kinds[i, j], offsets, radius, rotations[i, j])
            masks[i][box][inside] = kinds[i, j]
            under = volumes[i][tuple(np.minimum(centre.astype(int), high - 1))]
            level = under + contrasts[i, j]
            if not 0 <= level <= 255:
                level = under - contrasts[i, j]
            volumes[i][box][inside] = level


def _inside(kind, offsets, radius, rotation):
    """Boolean `(d, h, w)` of the box voxels inside a shape of `kind`, from
    the voxels' offsets from the centre along each axis (three 1-D arrays).
    Every shape fits in the sphere of `radius`."""
    dz, dy, dx = offsets[0][:, None, None], offsets[1][None, :, None], offsets[2]
    if kind == 1:
        return dz * dz + dy * dy + dx * dx <= radius * radius
    # Coordinates in the shape's turned frame: rows of `rotation` are its axes.
    u, v, w = (r[0] * dz + r[1] * dy + r[2] * dx for r in rotation)
    if kind == 2:
        half = radius / np.sqrt(3)  # corners on the sphere
        return (np.abs(u) <= half) & (np.abs(v) <= half) & (np.abs(w) <= half)
    # A torus around the turned `w` axis: ring radius R, tube radius R·_TUBE,
    # R + tube = radius.
    ring = radius / (1 + _TUBE)
    tube = ring * _TUBE
    from_ring = np.sqrt(u * u + v * v) - ring
    return from_ring * from_ring + w * w <= tube * tube
