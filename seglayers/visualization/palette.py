import numpy as np

# Pixels with no class (ignored, or outside the palette) are drawn in the
# colour Pascal VOC gives its void label 255, which no id below 255 of
# `default_palette` gets. (It was grey, 128: class 7's colour, so class 7
# looked ignored.)
NEUTRAL = (224, 224, 192)


def default_palette(num_classes):
    """`num_classes` distinct `[r, g, b]` colours, class 0 black.

    The Pascal VOC colour map: the bits of the class id spread over the high
    bits of the three channels, so neighbouring ids differ strongly and
    VOC-style masks get their usual colours.

    >>> default_palette(4)
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    palette = []
    for class_id in range(num_classes):
        r = g = b = 0
        value = class_id
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.append([r, g, b])
    return palette


def colorize(mask, palette):
    """Class ids `(H, W)` or `(H, W, 1)` → uint8 colours `(H, W, 3)`.

    Ids outside `[0, len(palette))` (such as an ignore label) are `NEUTRAL`.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    colours = np.asarray(list(palette) + [list(NEUTRAL)], np.uint8)
    ids = mask.astype(np.int64)
    ids = np.where((ids >= 0) & (ids < len(palette)), ids, len(palette))
    return colours[ids]
