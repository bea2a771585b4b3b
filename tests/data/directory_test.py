import os

import keras
import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from seglayers import UNet, segmentation_dataset_from_directory  # noqa: E402

PALETTE = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]


def _write_pairs(
    root, n=6, size=(20, 24), mask_mode="L", image_ext=".png", num_classes=3, seed=0
):
    rng = np.random.default_rng(seed)
    os.makedirs(root / "images", exist_ok=True)
    os.makedirs(root / "masks", exist_ok=True)
    masks = []
    for i in range(n):
        image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{i}{image_ext}")
        mask = rng.integers(0, num_classes, size=size, dtype=np.uint8)
        mask[:2] = 255
        masks.append(mask)
        if mask_mode == "L":
            Image.fromarray(mask, mode="L").save(root / "masks" / f"s{i}.png")
        elif mask_mode == "P":
            pal = Image.fromarray(mask, mode="P")
            flat = sum(PALETTE, []) + [255, 255, 255] * 253
            pal.putpalette(flat)
            pal.save(root / "masks" / f"s{i}.png")
        elif mask_mode == "RGB":
            colours = np.array(PALETTE + [[255, 255, 255]] * 253, np.uint8)
            Image.fromarray(colours[mask]).save(root / "masks" / f"s{i}.png")
    return masks


def _all(dataset):
    images, masks = [], []
    for x, y in dataset:
        images.append(x.numpy())
        masks.append(y.numpy())
    return np.concatenate(images), np.concatenate(masks)


def _load_fails(root, match, **kwargs):
    """Reading every batch of the folder fails with `match` (when the data
    set is made, or in tf.data)."""
    kwargs = {"image_size": (20, 24), "num_classes": 3, "ignore_class": 255, **kwargs}
    with pytest.raises(Exception, match=match):
        _all(segmentation_dataset_from_directory(root, **kwargs))


def test_yields_float_images_and_int_masks(tmp_path):
    written = _write_pairs(tmp_path)
    dataset = segmentation_dataset_from_directory(
        tmp_path,
        image_size=(20, 24),
        batch_size=4,
        num_classes=3,
        ignore_class=255,
        shuffle=False,
    )
    images, masks = _all(dataset)
    assert images.shape == (6, 20, 24, 3) and images.dtype == np.float32
    assert masks.shape == (6, 20, 24, 1) and masks.dtype == np.int32
    assert 0 <= images.min() and images.max() <= 255
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_numpy_integer_arguments_read_as_ints(tmp_path):
    written = _write_pairs(tmp_path)
    dataset = segmentation_dataset_from_directory(
        tmp_path,
        image_size=(np.int64(20), np.int32(24)),
        batch_size=np.int64(4),
        num_classes=np.int64(3),
        ignore_class=np.uint8(255),
        shuffle=False,
    )
    images, masks = _all(dataset)
    assert images.shape == (6, 20, 24, 3)
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_palette_png_reads_indices_not_colours(tmp_path):
    written = _write_pairs(tmp_path, mask_mode="P")
    # What tf.io.decode_png gives for the same file: colours, not ids.
    decoded = tf.io.decode_png(tf.io.read_file(str(tmp_path / "masks" / "s0.png")))
    assert decoded.shape[-1] in (3, 4) and decoded.numpy().max() == 255
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            shuffle=False,
        )
    )
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_rgb_masks_with_a_palette(tmp_path):
    written = _write_pairs(tmp_path, mask_mode="RGB", image_ext=".jpg")
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            palette=PALETTE + [[255, 255, 255]],
            shuffle=False,
        )
    )
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_masks_are_resized_with_nearest_neighbour(tmp_path):
    _write_pairs(tmp_path, size=(40, 40))
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path, image_size=(17, 23), num_classes=3, ignore_class=255
        )
    )
    assert set(np.unique(masks)) <= {0, 1, 2, 255}  # no invented labels


def test_split_is_deterministic_and_disjoint(tmp_path):
    _write_pairs(tmp_path, n=10)
    kwargs = dict(
        image_size=(20, 24),
        num_classes=3,
        ignore_class=255,
        validation_split=0.3,
        subset="both",
        seed=7,
    )
    train, val = segmentation_dataset_from_directory(tmp_path, **kwargs)
    train2, val2 = segmentation_dataset_from_directory(tmp_path, **kwargs)
    _, val_masks = _all(val)
    np.testing.assert_array_equal(val_masks, _all(val2)[1])
    assert len(val_masks) == 3 and len(_all(train)[1]) == 7
    train_set = {m.tobytes() for m in _all(train)[1]}
    assert not train_set & {m.tobytes() for m in val_masks}
    # Autotuning off (`without_autotuning`: it delayed epochs by up to 30 s).
    for dataset in (train, val):
        assert dataset.options().autotune.enabled is False


def test_one_hot_and_dict_output(tmp_path):
    _write_pairs(tmp_path)
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match=r"needs the TensorFlow backend"):
            segmentation_dataset_from_directory(
                tmp_path, image_size=(20, 24), num_classes=3, one_hot=True
            )
        return
    dataset = segmentation_dataset_from_directory(
        tmp_path,
        image_size=(20, 24),
        num_classes=3,
        ignore_class=255,
        one_hot=True,
        as_dict=True,
        shuffle=False,
    )
    batch = next(iter(dataset))
    assert set(batch) == {"images", "segmentation_masks"}
    masks = batch["segmentation_masks"].numpy()
    assert masks.shape == (6, 20, 24, 3)
    assert (masks[:, :2].sum(-1) == 0).all()  # ignored rows


def _dict_dataset(root):
    """One batch of six 20×24 pairs as `{"images", "segmentation_masks"}`."""
    _write_pairs(root)
    return segmentation_dataset_from_directory(
        root,
        image_size=(20, 24),
        num_classes=3,
        ignore_class=255,
        as_dict=True,
        shuffle=False,
        batch_size=6,
    )


def test_joint_augmentation_keeps_ids(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras layers run inside tf.data on the TensorFlow backend")
    dataset = _dict_dataset(tmp_path)
    # Keras's augmentation layers take the dict and move images and masks
    # together; masks are transformed with nearest neighbour.
    flip = keras.layers.RandomFlip("horizontal_and_vertical", seed=1)
    rotate = keras.layers.RandomRotation(0.25, fill_mode="constant", seed=2)
    plain = next(iter(dataset))
    batch = next(iter(dataset.map(lambda b: rotate(flip(b)))))
    masks = batch["segmentation_masks"].numpy()
    assert masks.shape == (6, 20, 24, 1)
    assert set(np.unique(masks)) <= {0, 1, 2, 255}  # ids preserved, none blended
    assert not np.array_equal(masks, plain["segmentation_masks"].numpy())
    # The same transform on both: pixels that kept their image value kept
    # their mask value (checked where the image is unchanged).
    images = batch["images"].numpy()
    same = (images == plain["images"].numpy()).all(-1)
    np.testing.assert_array_equal(
        masks[same], plain["segmentation_masks"].numpy()[same]
    )


def test_trains_a_unet(tmp_path):
    _write_pairs(tmp_path, size=(32, 32))
    dataset = segmentation_dataset_from_directory(
        tmp_path, image_size=(32, 32), batch_size=3, num_classes=3, ignore_class=255
    )
    model = UNet(3, filters=4, depth=2, rescale=1 / 255)
    import seglayers

    model.compile(
        "adam",
        seglayers.DiceCrossEntropyLoss(ignore_class=255),
        metrics=[seglayers.MeanIoU(3, ignore_class=255)],
    )
    # shuffle=False: Keras 3.15 warns that fit's default shuffle=True is ignored
    # for a tf.data.Dataset (the loader shuffles).
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "setup, kwargs, match",
    [
        ("no-images", {}, r"has no `images/` folder"),
        ("no-masks", {}, r"has no `masks/` folder"),
        ("empty", {}, r"holds no image.*`directory` must hold `images/` and"),
        ("image-without-mask", {}, r"1 images have no partner in .*masks: lonely"),
        ("mask-without-image", {}, r"1 masks have no partner in .*images: orphan"),
        ("missing", {}, r"No such folder"),
        ("file", {}, r"data is a file, not a folder\. Pass the folder that holds"),
        ("ok", {"image_size": (0, 4)}, r"`image_size` must be"),
        ("ok", {"subset": "training"}, r"needs a `validation_split`"),
        (
            "ok",
            {"validation_split": 0.2, "subset": "train", "seed": 0},
            r"`subset` must be one of 'training', 'validation' or 'both'\. "
            r"Received: subset='train'",
        ),
        (
            "ok",
            {"validation_split": 0.2, "subset": "both", "seed": 0},
            r"`validation_split`=0\.2 of 2 pairs in .* leaves an empty subset",
        ),
        ("ok", {"one_hot": True}, r"needs `num_classes`.*Received: num_classes=None"),
        (
            "ok",
            {"palette": [[0, 0, 0], [255, 0, 0]]},
            r"`palette` needs `num_classes`.*Received: num_classes=None",
        ),
        ("ok", {"validation_split": 1.5}, r"`validation_split` must be in \(0, 1\)"),
        ("ok", {"interpolation": "cubic"}, r"`interpolation` must be one of"),
        # "no" shuffled the pairs (a non-empty string is true)
        ("ok", {"shuffle": "no"}, r"^`shuffle` must be True or False\. "),
        # Without num_classes it was never looked at.
        (
            "ok",
            {"ignore_class": "255"},
            r"^`ignore_class` must be an int class id such as 255, or None\. "
            r"Received: ignore_class='255'$",
        ),
    ],
)
def test_bad_folders_and_arguments(tmp_path, setup, kwargs, match):
    root = tmp_path / "data"
    if setup == "no-images":
        os.makedirs(root / "masks")
    elif setup == "no-masks":
        os.makedirs(root / "images")
    elif setup == "empty":
        os.makedirs(root / "images")
        os.makedirs(root / "masks")
    elif setup == "file":
        root.write_text("not a folder")
    elif setup != "missing":
        _write_pairs(root, n=2)
    if setup == "image-without-mask":
        Image.new("RGB", (4, 4)).save(root / "images" / "lonely.png")
    if setup == "mask-without-image":
        Image.new("L", (4, 4)).save(root / "masks" / "orphan.png")
    error = TypeError if {"shuffle", "ignore_class"} & set(kwargs) else ValueError
    with pytest.raises(error, match=match):
        segmentation_dataset_from_directory(root, **kwargs)


def test_out_of_range_mask_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)
    match = r"s\d\.png holds class ids \[255\] outside \[0, 3\)"
    _load_fails(tmp_path, match, ignore_class=None)


def test_unreadable_mask_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)
    (tmp_path / "masks" / "s1.png").write_bytes(b"not a png")
    _load_fails(tmp_path, r"Cannot read the mask .*s1\.png")


def test_unreadable_image_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)
    (tmp_path / "images" / "s0.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read the image .*s0\.png"):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


def test_colour_mask_without_palette(tmp_path):
    _write_pairs(tmp_path, n=1, mask_mode="RGB")
    _load_fails(tmp_path, r"is a colour \(mode 'RGB'\) mask; pass `palette`")


def test_grey_masks_with_alpha_are_ids(tmp_path):
    written = _write_pairs(tmp_path, n=2)
    for i, mask in enumerate(written):  # The same ids, with an alpha channel.
        alpha = np.full_like(mask, 128)
        path = tmp_path / "masks" / f"s{i}.png"
        Image.fromarray(np.stack([mask, alpha], -1), mode="LA").save(path)
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path, (20, 24), num_classes=3, ignore_class=255, shuffle=False
        )
    )
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_unknown_colours_with_ignore_class_minus_1(tmp_path):
    _write_pairs(tmp_path, n=1, mask_mode="RGB")
    # The palette lacks the white of the ignored rows: unknown colours, which
    # once became id -1, that is ignored pixels.
    match = r"holds colours not in `palette` \(each.*\): \[\[255"
    _load_fails(tmp_path, match, ignore_class=-1, palette=PALETTE)


def test_keras_cv_augmentation_keeps_ids(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras-cv layers run inside tf.data on the TensorFlow backend")
    keras_cv = pytest.importorskip("keras_cv")
    dataset = _dict_dataset(tmp_path)
    # keras-cv's layers read the same dict and move masks with the images.
    flip = keras_cv.layers.RandomFlip("horizontal_and_vertical", seed=3)
    plain = next(iter(dataset))
    batch = next(iter(dataset.map(flip)))
    masks = batch["segmentation_masks"].numpy()
    # keras-cv hands masks back as float32 (its compute dtype), still ids.
    assert masks.shape == (6, 20, 24, 1) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0, 1, 2, 255}
    flips = {
        "none": lambda a: a,
        "horizontal": lambda a: a[:, ::-1],
        "vertical": lambda a: a[::-1],
        "both": lambda a: a[::-1, ::-1],
    }
    seen = set()
    for image, mask, plain_image, plain_mask in zip(
        batch["images"].numpy(),
        masks,
        plain["images"].numpy(),
        plain["segmentation_masks"].numpy(),
    ):
        # Whichever flip the image got, its mask got the same one.
        name = next(
            n for n, f in flips.items() if np.array_equal(f(plain_image), image)
        )
        np.testing.assert_array_equal(flips[name](plain_mask), mask)
        seen.add(name)
    assert seen != {"none"}


def test_images_are_the_files_pixels(tmp_path):
    _write_pairs(tmp_path, n=2)
    images, _ = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            shuffle=False,
        )
    )
    for i, image in enumerate(images):
        with Image.open(tmp_path / "images" / f"s{i}.png") as written:
            np.testing.assert_array_equal(image, np.asarray(written, np.float32))


def test_duplicated_image_stems_name_both_files(tmp_path):
    _write_pairs(tmp_path, n=2)
    Image.new("RGB", (24, 20)).save(tmp_path / "images" / "s0.jpg")
    with pytest.raises(
        ValueError,
        match=r"images/s0\.jpg and .*images/s0\.png share the name 's0'"
        r".*Rename or remove one of the two",
    ):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


def test_duplicated_mask_stems_name_both_files(tmp_path):
    _write_pairs(tmp_path, n=2)
    Image.new("L", (24, 20)).save(tmp_path / "masks" / "s1.bmp")
    with pytest.raises(
        ValueError, match=r"masks/s1\.bmp and .*masks/s1\.png share the name 's1'"
    ):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


def test_mask_of_another_size_names_both_files(tmp_path):
    _write_pairs(tmp_path, n=2)
    Image.new("L", (12, 10)).save(tmp_path / "masks" / "s1.png")
    with pytest.raises(
        ValueError,
        match=r"The image .*images/s1\.png is 20x24 \(height x width\) but its mask "
        r".*masks/s1\.png is 10x12; .*Resize the mask to its image's size with "
        "nearest neighbour",
    ):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


@pytest.mark.parametrize("extension", ["png", "jpg", "gif", "bmp"])
def test_truncated_image_is_named_up_front(tmp_path, extension):
    _write_pairs(tmp_path, n=2, image_ext=f".{extension}")
    path = tmp_path / "images" / f"s1.{extension}"
    complete = segmentation_dataset_from_directory(
        tmp_path, image_size=(20, 24), num_classes=3, ignore_class=255
    )
    assert len(_all(complete)[0]) == 2  # the complete file passes
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # The header still opens.
    with pytest.raises(ValueError, match=rf"Cannot read the image .*s1\.{extension}"):
        segmentation_dataset_from_directory(
            tmp_path, image_size=(20, 24), num_classes=3, ignore_class=255
        )


def test_valid_file_with_trailing_bytes_is_not_refused(tmp_path):
    _write_pairs(tmp_path, n=2)
    path = tmp_path / "images" / "s1.png"
    path.write_bytes(path.read_bytes() + b"extra bytes some tools append")
    dataset = segmentation_dataset_from_directory(
        tmp_path, image_size=(20, 24), num_classes=3, ignore_class=255
    )
    assert len(_all(dataset)[0]) == 2


def test_ignore_class_that_is_a_class_id(tmp_path):
    _write_pairs(tmp_path, n=2)
    with pytest.raises(
        ValueError, match=r"`ignore_class`=2 is also a class id \(ids run over \[0, 3\)"
    ):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=2)


def test_binary_masks_with_num_classes_1(tmp_path):
    written = _write_pairs(tmp_path, n=2, num_classes=2)
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=1,
            ignore_class=255,
            shuffle=False,
        )
    )
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))
    with pytest.raises(ValueError, match=r"`one_hot=True` with num_classes=1"):
        segmentation_dataset_from_directory(tmp_path, num_classes=1, one_hot=True)
    _write_pairs(tmp_path, n=2, num_classes=3)  # Now ids 0, 1 and 2.
    _load_fails(tmp_path, r"class ids \[2\] outside \[0, 2\)", num_classes=1)


def _save_mask(path, mask, form):
    """Writes the ids `mask` (H, W) as `form`, a layout a mask file can have."""
    if form in ("L", "I;16"):
        Image.fromarray(mask.astype(np.uint16 if form == "I;16" else np.uint8)).save(
            path
        )
    elif form == "P":
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette(sum(PALETTE, []) + [255, 255, 255] * 253)
        image.save(path)
    else:  # "RGB" or "RGBA": the colours of PALETTE, white where ignored.
        colours = np.array(PALETTE + [[255, 255, 255]] * 253, np.uint8)[mask]
        if form == "RGBA":
            colours = np.dstack([colours, np.full(mask.shape, 9, np.uint8)])
        Image.fromarray(colours).save(path)


@pytest.mark.parametrize(
    "name, form, decoder, palette",
    [
        ("m.png", "L", "png", None),
        ("m.png", "I;16", "png16", None),
        ("m.bmp", "L", "bmp", None),
        ("m.bmp", "P", "bmp", None),
        ("m.png", "P", "pillow", None),
        ("m.png", "RGB", "png_rgb", PALETTE + [[255, 255, 255]]),
        ("m.png", "RGBA", "png_rgb", PALETTE + [[255, 255, 255]]),
        ("m.bmp", "RGB", "bmp_rgb", PALETTE + [[255, 255, 255]]),
    ],
)
def test_tensorflow_and_pillow_read_the_same_ids(
    tmp_path, name, form, decoder, palette
):
    from seglayers.data.file_checks import _mask_header
    from seglayers.data.mask_files import read_mask

    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    mask = np.random.default_rng(0).integers(0, 3, size=(20, 24))
    mask[:2] = 255
    Image.new("RGB", (24, 20)).save(tmp_path / "images" / "m.png")
    path = tmp_path / "masks" / name
    _save_mask(path, mask, form)
    assert _mask_header(str(path)) == ((20, 24), decoder)
    by_pillow = read_mask(str(path), 3, 255, palette)
    _, loaded = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            palette=palette,
            batch_size=1,
        )
    )
    np.testing.assert_array_equal(loaded[0], by_pillow)
    np.testing.assert_array_equal(loaded[0, ..., 0], mask)


def test_palette_mask_among_greyscale_masks(tmp_path):
    written = _write_pairs(tmp_path, n=4)
    _save_mask(tmp_path / "masks" / "s2.png", written[2], "P")
    _save_mask(tmp_path / "masks" / "s3.bmp", written[3], "L")
    os.remove(tmp_path / "masks" / "s3.png")
    _, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            shuffle=False,
        )
    )
    np.testing.assert_array_equal(masks[..., 0], np.stack(written))


def test_out_of_range_16_bit_mask_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)
    mask = np.zeros((20, 24), np.uint16)
    mask[0, 0] = 300
    _save_mask(tmp_path / "masks" / "s1.png", mask, "I;16")
    _load_fails(tmp_path, r"s1\.png holds class ids \[300\] outside \[0, 3\)")


def test_truncated_mask_is_named_up_front(tmp_path):
    _write_pairs(tmp_path, n=2)
    path = tmp_path / "masks" / "s1.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match=r"Cannot read the mask .*s1\.png"):
        segmentation_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


@pytest.mark.parametrize("interpolation", ["bilinear", "lanczos3"])
def test_files_of_another_size_are_resized(tmp_path, interpolation):
    _write_pairs(tmp_path, n=2, size=(40, 48))
    images, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path,
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            interpolation=interpolation,
            shuffle=False,
        )
    )
    image = np.asarray(Image.open(tmp_path / "images" / "s0.png"))
    expected = tf.image.resize(image, (20, 24), method=interpolation).numpy()
    np.testing.assert_array_equal(images[0], expected)
    assert masks.shape == (2, 20, 24, 1) and set(np.unique(masks)) <= {0, 1, 2, 255}


def test_separate_subsets_need_a_seed(tmp_path):
    _write_pairs(tmp_path, n=4)
    with pytest.raises(ValueError, match=r"^`subset`='training' needs a `seed`"):
        segmentation_dataset_from_directory(
            tmp_path, validation_split=0.5, subset="training"
        )


def test_validation_split_of_another_type_is_named(tmp_path):
    _write_pairs(tmp_path, n=2)
    with pytest.raises(
        TypeError,
        match=r"`validation_split` must be a float in \(0, 1\), e\.g\. 0\.2, or None\. "
        r"Received: validation_split='0\.2'",
    ):
        segmentation_dataset_from_directory(
            tmp_path, validation_split="0.2", subset="both"
        )


def test_a_negative_seed_is_named(tmp_path):
    _write_pairs(tmp_path, n=2)
    with pytest.raises(ValueError, match=r"Received: seed=-1"):
        segmentation_dataset_from_directory(tmp_path, seed=-1)


def test_an_id_out_of_range_among_ignored_pixels_names_the_file(tmp_path):
    _write_pairs(tmp_path, n=2)  # Rows 0 and 1 of every mask are 255.
    mask = np.asarray(Image.open(tmp_path / "masks" / "s1.png")).copy()
    mask[5, 5] = 3
    Image.fromarray(mask, mode="L").save(tmp_path / "masks" / "s1.png")
    _load_fails(tmp_path, r"s1\.png holds class ids \[3\] outside \[0, 3\)")


def test_files_at_image_size_and_of_another_size_mixed(tmp_path):
    # A folder of files at image_size skips every resize (the other tests);
    # a mixed one decides per file.
    _write_pairs(tmp_path / "small", n=2, size=(20, 24))
    _write_pairs(tmp_path / "large", n=2, size=(40, 48), seed=1)
    os.rename(tmp_path / "large/images/s0.png", tmp_path / "small/images/t.png")
    os.rename(tmp_path / "large/masks/s0.png", tmp_path / "small/masks/t.png")
    images, masks = _all(
        segmentation_dataset_from_directory(
            tmp_path / "small",
            image_size=(20, 24),
            num_classes=3,
            ignore_class=255,
            shuffle=False,
        )
    )
    for i, stem in enumerate(["s0", "s1", "t"]):
        with Image.open(tmp_path / "small/images" / f"{stem}.png") as written:
            expected = tf.image.resize(np.asarray(written), (20, 24)).numpy()
        np.testing.assert_array_equal(images[i], expected)
    with Image.open(tmp_path / "small/masks/s1.png") as written:
        np.testing.assert_array_equal(masks[1, ..., 0], np.asarray(written))
    with Image.open(tmp_path / "small/masks/t.png") as written:
        expected = tf.image.resize(np.asarray(written)[..., None], (20, 24), "nearest")
    np.testing.assert_array_equal(masks[2], expected.numpy())


def test_a_file_that_changed_size_since_is_not_read_as_is(tmp_path):
    _write_pairs(tmp_path / "a", n=2, size=(20, 24))
    dataset = segmentation_dataset_from_directory(
        tmp_path / "a", image_size=(20, 24), num_classes=3, ignore_class=255
    )
    _write_pairs(tmp_path / "b", n=2, size=(40, 48))
    for kind in ("images", "masks"):
        os.replace(tmp_path / "b" / kind / "s1.png", tmp_path / "a" / kind / "s1.png")
    # TensorFlow's error, unnamed: naming the file cost 1.5% of the CPU.
    with pytest.raises(Exception, match=r"not compatible with expected shape"):
        _all(dataset)


def test_a_file_damaged_inside_is_found_after_the_pipeline_fails(tmp_path):
    from seglayers.data.directory import undecodable_file

    _write_pairs(tmp_path, n=3)
    # A 1-bit BMP mask, which TensorFlow's decoder refuses and Pillow reads.
    os.remove(tmp_path / "masks" / "s0.png")
    Image.new("1", (24, 20)).save(tmp_path / "masks" / "s0.bmp")
    assert undecodable_file(tmp_path) is None
    damaged = bytearray((tmp_path / "images" / "s1.png").read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 20] = bytes(20)  # Header and end stay sound.
    (tmp_path / "images" / "s1.png").write_bytes(bytes(damaged))
    _load_fails(tmp_path, r"Invalid PNG data")  # TensorFlow's, naming no file.
    path, reason = undecodable_file(tmp_path)
    assert path == str(tmp_path / "images" / "s1.png")
    assert reason.startswith("Invalid PNG data, size")
