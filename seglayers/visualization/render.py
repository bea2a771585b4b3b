import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from seglayers._files import atomic_file
from seglayers._validation import check_choice, check_class_names, is_real
from seglayers.visualization.palette import NEUTRAL, check_drawing_palette, colorize

_ERROR = (255, 0, 0)
_CORRECT = (0, 0, 0)
_GAP = 4
# Spatial axes of a volume: depth, height, width.
SLICE_AXES = (0, 1, 2)


def overlay(image, mask, palette, alpha=0.5):
    """Blends the colours of `mask` over `image` by `alpha` in [0, 1].

    `image` is `(H, W, 3)`, or grey `(H, W)` or `(H, W, channels)` (the
    first channel is drawn), with values as `display_image` draws them:
    [0, 255] as they are, floats in [0, 1] scaled, other ranges stretched.

    Pixels without a class (ids outside the palette) keep the image.
    """
    if not (is_real(alpha) and 0 <= alpha <= 1):
        raise ValueError(
            "`alpha` must be a number in [0, 1], the weight of the mask's "
            f"colours, e.g. 0.5. Received: alpha={alpha!r}"
        )
    # As `render_grid` draws it: floats in [0, 1] (were black) scaled.
    given = np.shape(image)
    image = _rgb(image).astype(np.float32)
    colours = colorize(mask, palette).astype(np.float32)
    ids = _without_channel(mask, image_rank=3)
    if ids.shape != image.shape[:2]:
        raise ValueError(
            "`mask` must cover the pixels of `image`: ids of shape "
            f"{image.shape[:2]} or {image.shape[:2] + (1,)}. Resize the mask "
            "with nearest neighbour, or the image. Received: image of shape "
            f"{given}, mask of shape {np.shape(mask)}"
        )
    labelled = ((ids >= 0) & (ids < len(palette)))[..., None]
    blended = (1 - alpha) * image + alpha * colours
    return np.where(labelled, blended, image).astype(np.uint8)


def _error_map(truth, prediction, num_colours):
    truth = np.asarray(truth)[..., 0] if np.ndim(truth) == 3 else np.asarray(truth)
    labelled = (truth >= 0) & (truth < num_colours)
    out = np.full(truth.shape + (3,), NEUTRAL, np.uint8)
    out[labelled] = np.where(
        (prediction == truth)[labelled][:, None], _CORRECT, _ERROR
    ).astype(np.uint8)
    return out


def central_slice(volumes, axis=0):
    """The central slice of each of `volumes` `(N, D, H, W, ...)` along
    spatial `axis` (0: depth, 1: height, 2: width): `(N, ..2-D.., ...)`.

    >>> central_slice(np.zeros((2, 5, 6, 7, 1)), axis=1).shape
    (2, 5, 7, 1)
    """
    axis = check_choice("axis", axis, SLICE_AXES)
    volumes = np.asarray(volumes)
    if volumes.ndim < 4:
        raise ValueError(
            "`volumes` must be a batch of volumes `(N, D, H, W, ...)`. "
            f"Received: volumes of shape {volumes.shape}"
        )
    if not volumes.shape[1 + axis]:  # numpy: "cannot do a non-empty take"
        raise ValueError(
            f"`volumes` have no slice along spatial axis {axis}. "
            f"Received: volumes of shape {volumes.shape}"
        )
    return np.take(volumes, volumes.shape[1 + axis] // 2, axis=1 + axis)


def display_image(image):
    """`image` as uint8 to draw: values in [0, 255] as they are; floats in
    [0, 1] (images divided by 255) and bools times 255; any other range (a
    scan in Hounsfield units, a z-scored volume) stretched from its minimum
    to its maximum, which clipping would draw black or white."""
    image = np.asarray(image)
    if image.dtype.kind in "cOSUMm":  # not "V": bfloat16 is ml_dtypes' "V"
        raise TypeError(
            "`image` must be an array of numbers (int, float or bool) to draw. "
            f"Received: image of dtype {image.dtype}"
        )
    values = image.astype(np.float32)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    floats = image.dtype.kind in "fb" or "float" in image.dtype.name  # bfloat16
    if floats and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / max(high - low, 1e-12))
    return np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)


def render_grid(
    images,
    masks,
    predictions,
    palette,
    class_names=None,
    error_map=True,
    alpha=0.5,
    slice_axis=0,
):
    """One row per sample: image | truth | prediction | overlay (| errors).

    `images` are `(N, H, W, channels)` (one channel is drawn grey; of more
    than three, the first is; values as `display_image` draws them: [0, 255]
    as they are, floats in [0, 1] scaled, other ranges stretched) and
    `predictions` class ids `(N, H, W)`.
    Volumes `(N, D, H, W, channels)` with ids `(N, D, H, W)` are drawn by
    their central slice along spatial `slice_axis` (0: depth, 1: height,
    2: width; see `central_slice`). Ignored pixels (ids outside the palette)
    are `NEUTRAL` in the truth and the error map, where red marks a wrong
    prediction. A legend of class colours and names runs along the bottom.
    Returns a uint8 `(height, width, 3)` array.

    Args:
        images: `(N, H, W, channels)` images or `(N, D, H, W, channels)`
            volumes.
        masks: the true class ids, `(N, H, W)` (`(N, D, H, W)` for
            volumes), or with a channel axis of 1.
        predictions: the predicted class ids, shaped as `masks`.
        palette: `(num_classes, 3)` colours, index = class id.
        class_names: optional names for the legend, at most one per colour.
            Defaults to the ids.
        error_map: bool, whether to add the error panel. Defaults to `True`.
        alpha: float in [0, 1], the prediction's weight in the overlay.
            Defaults to 0.5.
        slice_axis: 0, 1 or 2, the spatial axis a volume is sliced across.
            Defaults to 0.
    """
    slice_axis = check_choice("slice_axis", slice_axis, SLICE_AXES)
    palette = check_drawing_palette(palette)  # None: "has no len()"
    _check_grid(images, masks, predictions)
    if class_names is not None:
        class_names = check_class_names(class_names)
        if len(class_names) > len(palette):
            raise ValueError(
                f"`class_names` has {len(class_names)} names for the "
                f"{len(palette)} colours of `palette`: give one colour per "
                f"class. Received: class_names={class_names}"
            )
    rank = np.ndim(images)
    masks, predictions = (_without_channel(x, rank) for x in (masks, predictions))
    if np.ndim(images) == 5:
        images, masks, predictions = (
            central_slice(x, slice_axis) for x in (images, masks, predictions)
        )
    rows = []
    for image, mask, prediction in zip(images, masks, predictions):
        image = _rgb(image)
        panels = [
            image,
            colorize(mask, palette),
            colorize(prediction, palette),
            overlay(image, prediction, palette, alpha),
        ]
        if error_map:
            panels.append(_error_map(mask, prediction, len(palette)))
        rows.append(_hstack(panels))
    grid = _vstack(rows)
    names = class_names or [str(i) for i in range(len(palette))]
    return _vstack([grid, _legend(names, palette, grid.shape[1])])


def _rgb(image):
    """`display_image(image)` as `(H, W, 3)`: other than three channels are
    grey levels, drawn from the first; `(H, W)` is grey too."""
    image = display_image(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or not image.shape[-1]:
        raise ValueError(
            "`image` must be one picture `(H, W, channels)` or `(H, W)`. "
            f"Received: image of shape {image.shape}"
        )
    if image.shape[-1] != 3:  # Grey levels: the first channel.
        image = np.repeat(image[..., :1], 3, axis=-1)
    return image


def _without_channel(ids, image_rank):
    """Id maps `(N, ..., 1)` as `(N, ...)`."""
    ids = np.asarray(ids)
    return ids[..., 0] if ids.ndim == image_rank else ids


def _check_grid(images, masks, predictions):
    """One mask and one prediction per image, of its size."""
    shapes = [np.shape(x) for x in (images, masks, predictions)]
    spatial = shapes[0][:-1]
    if len(shapes[0]) not in (4, 5):
        raise ValueError(
            "`images` must be a batch of images `(N, H, W, channels)` or of "
            "volumes `(N, D, H, W, channels)`; grey images without a channel "
            "axis go as `images[..., None]`. "
            f"Received: images of shape {shapes[0]}"
        )
    if shapes[0][0] == 0:
        raise ValueError(
            "`images` holds no image to draw: pass at least one. "
            f"Received: images of shape {shapes[0]}"
        )
    for name, shape in zip(("masks", "predictions"), shapes[1:]):
        if shape != spatial and shape != spatial + (1,):
            raise ValueError(
                f"`{name}` must hold one id map per image, of shape {spatial} "
                f"or {spatial + (1,)} for images {shapes[0]}. "
                f"Received: {name} of shape {shape}"
            )


def _hstack(panels):
    gap = np.full((panels[0].shape[0], _GAP, 3), 255, np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [gap, panel]
    return np.concatenate(out, axis=1)


def _vstack(rows):
    width = max(r.shape[1] for r in rows)
    padded = [
        np.pad(r, ((0, _GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        for r in rows
    ]
    return np.concatenate(padded, axis=0)


def _legend(names, palette, width):
    font = ImageFont.load_default()
    swatch, line = 12, 16
    entries = [(name, tuple(colour)) for name, colour in zip(names, palette)]
    # Lay the entries out left to right, wrapping at the grid's width.
    positions, x, y = [], 0, 0
    for name, _ in entries:
        entry_width = swatch + 4 + int(font.getlength(name)) + 12
        if x and x + entry_width > width:
            x, y = 0, y + line
        positions.append((x, y))
        x += entry_width
    legend = Image.new("RGB", (max(width, 1), y + line), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    for (name, colour), (x, y) in zip(entries, positions):
        draw.rectangle(
            [x, y + 2, x + swatch, y + 2 + swatch], fill=colour, outline=(0, 0, 0)
        )
        draw.text((x + swatch + 4, y + 2), name, fill=(0, 0, 0), font=font)
    return np.asarray(legend)


def save_png(array, path):
    """Writes `array` as a PNG atomically (a temporary file, then a rename),
    with the permissions the umask gives, like a file written with `open`."""
    # "" or a folder failed renaming a temporary file it named; bytes in a
    # concat.
    named = isinstance(path, (str, os.PathLike))
    if not named or not os.path.basename(os.fspath(path)) or os.path.isdir(path):
        raise (ValueError if named else TypeError)(
            "`path` must be a file path (str or `pathlib.Path`), e.g. "
            f"'mask.png'. Received: path={path!r}"
        )
    pixels = _png_pixels(array)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path, "wb") as f:
        Image.fromarray(pixels).save(f, format="PNG")


def _png_pixels(array):
    """`array` as uint8 `(H, W)` or `(H, W, 2 to 4)` (a 2-D uint16 array as
    it is), or raises: a cast wrapped 300 to 44 and drew floats in [0, 1]
    black."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if (
        array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4))
        or not array.size
    ):
        raise ValueError(
            "`array` must be a picture `(height, width)` or `(height, width, "
            "channels)` of 2 to 4 channels, with at least one pixel. "
            f"Received: array of shape {array.shape}"
        )
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2):
        return array  # uint16: a 16-bit grey PNG, for ids of more than 256 classes
    if array.dtype == bool:
        return array.astype(np.uint8)  # 0 and 1, as Pillow's cast had them
    numeric = np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)
    whole = numeric
    if numeric and array.size:
        whole = bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))
        whole = whole and array.min() >= 0 and array.max() <= 255
    if not whole:
        raise ValueError(
            "`array` must hold whole numbers in [0, 255] to be written as 8-bit "
            "pixels; scale it first, e.g. with "
            "`seglayers.visualization.display_image(array)`. Received: array "
            f"of dtype {array.dtype}"
            + (
                f", from {np.min(array)} to {np.max(array)}"
                if numeric and array.size
                else ""
            )
        )
    return array.astype(np.uint8)
