"""The samples `MaskVisualizer` draws: what its `data` may be, and the
shapes of the images and masks it takes from it."""


def check_data(data):
    """Refuses a `data` that is no batch nor data set of batches: `None` (no
    iterable), or images alone (an array is iterable, and its rows were
    read as a batch)."""
    iterable = hasattr(data, "__iter__") or hasattr(data, "__getitem__")
    if not iterable or hasattr(data, "shape"):
        hint = " Call it to get the generator." if callable(data) else ""
        raise TypeError(
            "`data` must be a batch `(images, masks)` or a data set of such "
            f"batches (e.g. `val.take(1)`).{hint} "
            f"Received: data of type {type(data).__name__}"
        )


def from_dict(batch):
    """`(images, masks)` from a batch of keras-cv's keys."""
    try:
        return batch["images"], batch["segmentation_masks"]
    except KeyError:
        raise ValueError(
            "`MaskVisualizer` reads a dict batch by the keys 'images' and "
            "'segmentation_masks' (those of keras-cv, and of the loaders' "
            "`as_dict=True`); map the dataset to them, or to tuples "
            f"`(images, masks)`. Received: a dict with keys {sorted(batch)}"
        ) from None


def check_samples(images, masks):
    """Shapes of the preview images and masks: one mask per image, same size."""
    if len(images) not in (4, 5):
        raise ValueError(
            "`MaskVisualizer` needs a batch of images `(batch, H, W, channels)` "
            "or of volumes `(batch, D, H, W, channels)`. "
            f"Received: images of shape {tuple(images)}"
        )
    spatial = len(images) - 1
    if (
        len(masks) < spatial
        or masks[0] != images[0]
        or masks[1:spatial] != images[1:spatial]
    ):
        what = (
            "height and width: `(batch, H, W)`, `(batch, H, W, 1)`"
            if spatial == 3
            else "depth, height and width: `(batch, D, H, W)`, `(batch, D, H, W, 1)`"
        )
        raise ValueError(
            f"`MaskVisualizer` needs one mask per image, of the image's {what} "
            "or one-hot. "
            f"Received: images of shape {tuple(images)}, masks of shape "
            f"{tuple(masks)}"
        )
