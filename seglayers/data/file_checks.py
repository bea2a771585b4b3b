"""Checks of image (or volume) and mask files made before any pixel is read
in tf.data, so that a broken file or pair is named, not met mid-epoch. The
image and volume loaders share them, and so share their messages."""

import os

from PIL import Image


def unreadable(kind, path, error):
    """The `ValueError` for a file that cannot be read."""
    reason = str(error).removesuffix(".")  # numpy's own messages may end in one
    return ValueError(
        f"Cannot read the {kind} {path}: {reason}. Remove or replace the file."
    )


def _image_size(path, kind):
    """`(height, width)` from a file's header (its pixels are not read).
    Refuses palette and 1-bit BMPs: TensorFlow's decoder, which reads the
    images, gives their indices as grey levels or fails mid-epoch."""
    try:
        with Image.open(path) as image:
            size, form, mode = (image.height, image.width), image.format, image.mode
    except Exception as error:
        raise unreadable(kind, path, error) from None
    if form == "BMP" and mode in ("P", "1"):
        raise ValueError(
            f"The {kind} {path} is a {'1-bit' if mode == '1' else 'palette'} "
            "BMP, which TensorFlow's decoder reads wrongly (palette indices as "
            "grey levels) or not at all. Save it as a 24-bit BMP or a PNG."
        )
    return size


# The last bytes of a complete file: a PNG's IEND chunk, a GIF's trailer,
# a JPEG's end-of-image marker (which a few bytes may follow). A file that
# ends otherwise is decoded once to confirm, so odd but valid files pass.
_TRAILERS = {".png": b"IEND\xaeB`\x82", ".gif": b";", ".jpg": b"\xff\xd9"}
_TRAILERS[".jpeg"] = _TRAILERS[".jpg"]


def _looks_complete(path):
    """Whether the file ends as a complete image does: a look at its last
    bytes (BMP: the size its header states), not a decode."""
    extension = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if extension == ".bmp":
            f.seek(2)
            return int.from_bytes(f.read(4), "little") <= size
        f.seek(max(size - 1024, 0))
        tail = f.read()
    trailer = _TRAILERS.get(extension)
    if trailer is None:
        return True
    if extension in (".jpg", ".jpeg"):
        return trailer in tail
    return tail.endswith(trailer)


def _check_complete(path, kind="image"):
    """Names a file cut short (a copy or download interrupted): TensorFlow's
    decoder, which reads the images (and most masks) in tf.data, would fail
    on it mid-epoch without naming it ("Invalid PNG data, size 6210"). Only a
    file whose end looks wrong is decoded, by Pillow, to confirm."""
    if _looks_complete(path):
        return
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:
        raise unreadable(kind, path, error) from None


# PNG colour types with more than one channel.
_COLOUR_TYPES = {2: "RGB", 4: "grey-and-alpha", 6: "RGBA"}


def _mask_header(path):
    """`((height, width), decoder)` of a mask file from its header: the
    decoder is "png" (8-bit grey), "png16" (16-bit grey), "png_rgb" (8-bit
    RGB or RGBA), "bmp" (8-bit indices) or "bmp_rgb" (24-bit), where
    TensorFlow's decoder gives exactly Pillow's array, else "pillow":
    palette PNGs (TF would expand indices to colours), GIFs, 1-, 2- and
    4-bit files (TF scales them to 0..255), grey with alpha, compressed or
    32-bit BMPs; "16-bit RGB" (and the like) for 16-bit colour PNGs,
    which Pillow reads with 8 bits. Refuses other formats (JPEG or WebP
    data named .png)."""
    try:
        with Image.open(path) as image:
            size, form, mode = (image.height, image.width), image.format, image.mode
        with open(path, "rb") as f:
            header = f.read(34)
    except Exception as error:
        raise unreadable("mask", path, error) from None
    if form not in ("PNG", "BMP", "GIF"):
        raise ValueError(
            f"The mask {path} is a {form} file, whatever its name says; masks "
            "are read as PNG, BMP or GIF files of class ids (a lossy format, "
            "JPEG or WebP, changes ids at object edges). Save the mask as a PNG."
        )
    decoder = "pillow"
    if form == "PNG":
        # IHDR, always first: bit depth at byte 24, colour type at 25.
        depth, colour = header[24], header[25]
        if depth == 16 and colour in _COLOUR_TYPES:
            # Pillow reads their high bytes: colours, for `palette`, but
            # every id below 256 as 0 (`mask_files.tf_decoder` decides).
            decoder = f"16-bit {_COLOUR_TYPES[colour]}"
        elif depth == 8 and (colour, mode) == (0, "L"):
            decoder = "png"
        elif depth == 8 and (colour, mode) in ((2, "RGB"), (6, "RGBA")):
            decoder = "png_rgb"
        elif depth == 16 and colour == 0:
            decoder = "png16"
    elif form == "BMP":
        bits = int.from_bytes(header[28:30], "little")
        compression = int.from_bytes(header[30:34], "little")
        if compression == 0 and (bits, mode) in ((8, "L"), (8, "P")):
            decoder = "bmp"
        elif compression == 0 and (bits, mode) == (24, "RGB"):
            decoder = "bmp_rgb"
    return size, decoder


def check_pairs(pairs):
    """Reads every header now, so that a file that is no image, or is cut
    short, or a mask of another size than its image, is named before training
    starts. Both are resized to `image_size` afterwards, which would hide a
    size mismatch. Returns `{mask path: decoder}` (see `_mask_header`) and
    `{mask path: (height, width)}`, the size of the pair."""
    decoders, sizes = {}, {}
    for image_path, mask_path in pairs:
        image_size = _image_size(image_path, "image")
        _check_complete(image_path)
        sizes[mask_path], decoders[mask_path] = _mask_header(mask_path)
        _check_complete(mask_path, "mask")
        check_same_size(image_path, image_size, mask_path, sizes[mask_path])
    return decoders, sizes


def check_same_size(path, size, mask_path, mask_size, kind="image"):
    """Raises if a mask's size is not its image's (or volume's)."""
    if tuple(size) == tuple(mask_size):
        return
    axes, unit = "height x width", "pixel"
    if len(size) == 3:
        axes, unit = "depth x height x width", "voxel"
    raise ValueError(
        f"The {kind} {path} is {'x'.join(map(str, size))} ({axes}) but its "
        f"mask {mask_path} is {'x'.join(map(str, mask_size))}; a mask labels "
        f"its {kind} {unit} for {unit}. Resize the mask to its {kind}'s size "
        "with nearest neighbour, or fix the pair."
    )


def _stem(name, extensions):
    """`name` without the longest of `extensions` it ends with: `a.nii.gz`
    pairs with `a.npy`, so a double suffix goes whole."""
    lower = name.lower()
    extension = max((e for e in extensions if lower.endswith(e)), key=len)
    return name[: -len(extension)]


def _list_files(folder, extensions, example):
    files = {}
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(extensions) or name.startswith("."):
            continue
        stem = _stem(name, extensions)
        if stem in files:
            # Pairing is by name: keeping either file would be a guess.
            raise ValueError(
                f"{files[stem]} and {os.path.join(folder, name)} share the name "
                f"{stem!r}; files are paired by name ({example}), so one of "
                "them would be dropped unseen. Rename or remove one of the two."
            )
        files[stem] = os.path.join(folder, name)
    return files


def find_pairs(directory, kind, extensions, mask_extensions, example):
    """Sorted `(file, mask)` path pairs of `directory/images/` and
    `directory/masks/`, matched by name; raises on a missing folder, an
    empty one, a name used twice, or a file without its partner.

    `kind` names the files ("image", "volume"); `example` shows a pair
    ("images/a.jpg with masks/a.png")."""
    try:
        directory = os.fspath(directory)
    except TypeError:
        raise TypeError(
            "`directory` must be the path of the folder that holds `images/` "
            f"and `masks/` (a str or pathlib.Path). Received: directory={directory!r}"
        ) from None
    if os.path.isfile(directory):
        raise ValueError(
            f"{directory} is a file, not a folder. Pass the folder that holds "
            "`images/` and `masks/`."
        )
    if not os.path.isdir(directory):
        raise ValueError(
            f"No such folder: {directory}. Pass the folder that holds "
            "`images/` and `masks/`."
        )
    folders = {}
    for name in ("images", "masks"):
        folders[name] = os.path.join(directory, name)
        if not os.path.isdir(folders[name]):
            raise ValueError(
                f"{directory} has no `{name}/` folder. Expected "
                f"{directory}/images/ and {directory}/masks/, with files paired "
                f"by name ({example})."
            )
    images = _list_files(folders["images"], extensions, example)
    masks = _list_files(folders["masks"], mask_extensions, example)
    if not images:
        raise ValueError(
            f"{folders['images']} holds no {kind} ({', '.join(extensions)}): "
            f"`directory` must hold `images/` and `masks/` folders of {kind}s "
            f"and masks paired by name ({example}). Received: "
            f"directory={directory!r}"
        )
    for missing, have, where in (
        (sorted(set(images) - set(masks)), f"{kind}s", folders["masks"]),
        (sorted(set(masks) - set(images)), "masks", folders["images"]),
    ):
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(
                f"{len(missing)} {have} have no partner in {where}: {shown}. "
                f"Pair every {kind} with a mask of the same name (masks as "
                f"{'/'.join(mask_extensions)})."
            )
    return [(images[stem], masks[stem]) for stem in sorted(images)]
