import os
import sys

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from seglayers import UNet, volume_dataset_from_directory  # noqa: E402


def _save(path, array):
    """Writes `array` as `.npy`, or as NIfTI for `.nii` / `.nii.gz`."""
    path = str(path)
    if path.endswith(".npy"):
        np.save(path, array)
        return
    nibabel = pytest.importorskip("nibabel")
    nibabel.Nifti1Image(array, np.eye(4)).to_filename(path)


def _write(root, n=4, size=(8, 10, 12), extensions=(".npy",), seed=0, classes=3):
    """`n` pairs of random volumes and masks; returns both as lists."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "images", exist_ok=True)
    os.makedirs(root / "masks", exist_ok=True)
    volumes, masks = [], []
    for i in range(n):
        extension = extensions[i % len(extensions)]
        volume = rng.random(size).astype(np.float32)
        mask = rng.integers(0, classes, size).astype(np.uint8)
        mask[0] = 255
        _save(root / "images" / f"s{i}{extension}", volume)
        _save(root / "masks" / f"s{i}{extension}", mask)
        volumes.append(volume)
        masks.append(mask)
    return volumes, masks


def _all(dataset):
    batches = list(dataset.as_numpy_iterator())
    return tuple(np.concatenate([b[i] for b in batches]) for i in (0, 1))


def test_reads_npy_and_nifti_pairs_by_stem(tmp_path):
    pytest.importorskip("nibabel")
    written = _write(tmp_path, n=3, extensions=(".npy", ".nii.gz", ".nii"))
    # A mask may be stored in another format than its volume, with a
    # trailing 1: s0.npy pairs with s0.nii.gz.
    os.remove(tmp_path / "masks" / "s0.npy")
    _save(tmp_path / "masks" / "s0.nii.gz", written[1][0][..., None])
    volumes, masks = _all(
        volume_dataset_from_directory(
            tmp_path, num_classes=3, ignore_class=255, shuffle=False
        )
    )
    assert volumes.shape == (3, 8, 10, 12, 1) and volumes.dtype == np.float32
    assert masks.shape == (3, 8, 10, 12, 1) and masks.dtype == np.int32
    np.testing.assert_array_equal(volumes[..., 0], np.stack(written[0]))
    np.testing.assert_array_equal(masks[..., 0], np.stack(written[1]))


def test_a_numpy_bool_shuffles(tmp_path):
    # tf.data takes a Python bool only: numpy's True failed inside it.
    _write(tmp_path, n=3)
    dataset = volume_dataset_from_directory(
        tmp_path, num_classes=3, ignore_class=255, shuffle=np.True_, seed=0
    )
    volumes, masks = _all(dataset)
    assert volumes.shape == (3, 8, 10, 12, 1) and masks.shape == (3, 8, 10, 12, 1)


def test_channels_last_volumes(tmp_path):
    _write(tmp_path, n=2)
    for i in range(2):
        np.save(tmp_path / "images" / f"s{i}.npy", np.ones((8, 10, 12, 2)))
    volumes, _ = _all(
        volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)
    )
    assert volumes.shape == (2, 8, 10, 12, 2)


def test_resampling_is_trilinear_for_volumes_nearest_for_masks(tmp_path):
    written = _write(tmp_path, n=2, size=(6, 16, 16))
    volumes, masks = _all(
        volume_dataset_from_directory(
            tmp_path,
            num_classes=3,
            volume_size=(6, 8, 11),
            ignore_class=255,
            shuffle=False,
        )
    )
    # Depth unchanged, so each slice is a bilinear 2-D resize.
    slices = np.stack(written[0]).reshape(12, 16, 16, 1)
    expected = tf.image.resize(slices, (8, 11)).numpy().reshape(2, 6, 8, 11, 1)
    np.testing.assert_allclose(volumes, expected, atol=1e-5)
    assert set(np.unique(masks)) <= {0, 1, 2, 255}
    halved = _all(
        volume_dataset_from_directory(
            tmp_path,
            num_classes=3,
            volume_size=(3, 8, 8),
            ignore_class=255,
            shuffle=False,
        )
    )[1]
    # Nearest neighbour only copies voxels: every other one, no blend.
    np.testing.assert_array_equal(
        halved[..., 0], np.stack(written[1])[:, 1::2, 1::2, 1::2]
    )


def _one_foreground_voxel(root, at=(9, 7, 5), size=(16, 16, 16)):
    """One volume whose values are the voxel index, one foreground voxel."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    np.save(root / "images" / "a.npy", np.arange(np.prod(size)).reshape(size))
    mask = np.zeros(size, np.uint8)
    mask[at] = 1
    np.save(root / "masks" / "a.npy", mask)
    return np.ravel_multi_index(at, size)


def _patches(root, n=40, **kwargs):
    dataset = volume_dataset_from_directory(
        root, num_classes=2, patch_size=(4, 4, 4), batch_size=None, **kwargs
    )
    return _all(dataset.repeat(n).batch(n))


def test_patches_centred_on_foreground(tmp_path):
    index = _one_foreground_voxel(tmp_path)
    volumes, masks = _patches(tmp_path, foreground_fraction=1.0, seed=1)
    assert volumes.shape == (40, 4, 4, 4, 1) and masks.shape == (40, 4, 4, 4, 1)
    assert (masks[:, 2, 2, 2, 0] == 1).all()  # the centre, patch // 2
    assert (volumes[:, 2, 2, 2, 0] == index).all()  # volume and mask aligned
    volumes, masks = _patches(tmp_path, foreground_fraction=0.5, seed=1)
    share = (masks.reshape(40, -1) == 1).any(-1).mean()
    assert 0.25 < share < 0.75  # 3% of patches placed anywhere would hold it
    # Wherever a patch lies, it is one block of the volume.
    steps = np.diff(volumes[:, 0, 0, :, 0], axis=-1)
    assert (steps == 1).all()


def test_patches_follow_the_seed_and_change_each_epoch(tmp_path):
    _one_foreground_voxel(tmp_path)
    first = _patches(tmp_path, n=10, seed=3)[0]
    np.testing.assert_array_equal(first, _patches(tmp_path, n=10, seed=3)[0])
    assert not np.array_equal(first, _patches(tmp_path, n=10, seed=4)[0])
    dataset = volume_dataset_from_directory(
        tmp_path, num_classes=2, patch_size=4, seed=3, batch_size=None
    )
    epochs = [next(iter(dataset))[0].numpy() for _ in range(4)]
    assert any(not np.array_equal(epochs[0], e) for e in epochs[1:])
    # Without shuffling (validation), the same patches every epoch.
    fixed = volume_dataset_from_directory(
        tmp_path, num_classes=2, patch_size=4, shuffle=False, batch_size=None
    )
    epochs = [next(iter(fixed))[0].numpy() for _ in range(3)]
    assert all(np.array_equal(epochs[0], e) for e in epochs[1:])


@pytest.mark.parametrize("ignore_class, fill", [(255, 255), (None, 0)])
def test_volumes_smaller_than_the_patch_are_padded(tmp_path, ignore_class, fill):
    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    np.save(tmp_path / "images" / "a.npy", np.full((6, 8, 8), 7.0))
    np.save(tmp_path / "masks" / "a.npy", np.ones((6, 8, 8), np.uint8))
    volumes, masks = _all(
        volume_dataset_from_directory(
            tmp_path, num_classes=2, ignore_class=ignore_class, patch_size=(8, 8, 8)
        )
    )
    assert volumes.shape == (1, 8, 8, 8, 1)
    assert (volumes[0, [0, 7]] == 0).all() and (volumes[0, 1:7] == 7).all()
    assert (masks[0, [0, 7]] == fill).all() and (masks[0, 1:7] == 1).all()


def test_split_is_deterministic_and_disjoint(tmp_path):
    _write(tmp_path, n=5)
    kwargs = dict(num_classes=3, ignore_class=255, validation_split=0.4, seed=7)
    train, val = volume_dataset_from_directory(tmp_path, subset="both", **kwargs)
    val_set = {v.tobytes() for v in _all(val)[0]}
    again = volume_dataset_from_directory(tmp_path, subset="validation", **kwargs)
    assert {v.tobytes() for v in _all(again)[0]} == val_set  # (reshuffled)
    train_set = {v.tobytes() for v in _all(train)[0]}
    assert len(val_set) == 2 and len(train_set) == 3
    assert not train_set & val_set
    for dataset in (train, val, again):
        assert dataset.options().autotune.enabled is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(validation_split=0.4, subset="training"),
            r"^`subset`='training' needs a `seed`, the same in the call for the "
            r"other subset, .*Received: seed=None$",
        ),
        (
            dict(validation_split=0.4, subset="validation"),
            r"^`subset`='validation' needs a `seed`.*Received: seed=None$",
        ),
        (
            dict(validation_split=0.4, seed=7),
            r"^`validation_split`=0\.4 needs a `subset`: 'training' or "
            r"'validation' .*Received: subset=None$",
        ),
    ],
    ids=["training-without-seed", "validation-without-seed", "split-without-subset"],
)
def test_a_split_that_could_overlap_or_drop_files_is_refused(tmp_path, kwargs, match):
    # Without a seed each call drew its own split: with 20 files, 4 were in
    # both subsets. Without a subset the validation files were left out.
    _write(tmp_path, n=5)
    with pytest.raises(ValueError, match=match):
        volume_dataset_from_directory(tmp_path, num_classes=3, **kwargs)


def test_an_ignore_class_beyond_int32_is_refused(tmp_path):
    # Masks are int32 ids: 2**32 wrapped to 0, ignored voxels read as class 0.
    _write(tmp_path, n=1)
    with pytest.raises(
        ValueError,
        match=r"^`ignore_class` must fit in int32, the dtype of the ids seglayers "
        r"compares and returns, e\.g\. 255 or -1\. Received: ignore_class=4294967296$",
    ):
        volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=2**32)


def test_trains_a_3d_unet(tmp_path):
    if keras.backend.backend() != "tensorflow":
        # The loader's output is the same on every backend; JAX compiles a
        # 3-D U-Net for over a minute on CPU (tests/models covers it there).
        pytest.skip("one backend suffices for feeding fit")
    _write(tmp_path, n=2, size=(16, 16, 16))
    dataset = volume_dataset_from_directory(
        tmp_path, num_classes=3, ignore_class=255, patch_size=8
    )
    model = UNet(3, filters=4, depth=2, spatial_dims=3)
    import seglayers

    model.compile("adam", seglayers.DiceCrossEntropyLoss(ignore_class=255))
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def _broken(root, setup):
    """Writes two good pairs, then breaks them as `setup` says."""
    if setup == "missing":
        return
    if setup in ("no-images", "no-masks", "empty"):
        for name in {"no-images": ["masks"], "no-masks": ["images"]}.get(
            setup, ["images", "masks"]
        ):
            os.makedirs(root / name)
        return
    _write(root, n=2)
    images, masks = root / "images", root / "masks"
    changes = {
        "lonely": lambda: np.save(images / "lonely.npy", np.zeros((8, 10, 12))),
        "orphan": lambda: np.save(masks / "orphan.npy", np.zeros((8, 10, 12))),
        "twice": lambda: (masks / "s1.nii.gz").write_bytes(b""),
        "size": lambda: np.save(masks / "s1.npy", np.zeros((8, 10, 11), np.uint8)),
        "sizes": lambda: _write(root, n=1, size=(4, 4, 4)),
        "channels": lambda: np.save(images / "s1.npy", np.zeros((8, 10, 12, 2))),
        "mask-rgb": lambda: np.save(masks / "s1.npy", np.zeros((8, 10, 12, 3))),
        "2d": lambda: np.save(images / "s1.npy", np.zeros((10, 12))),
        "not-npy": lambda: (images / "s1.npy").write_bytes(b"not a volume"),
        "cut-short": lambda: (images / "s1.npy").write_bytes(
            (images / "s1.npy").read_bytes()[:200]
        ),
        "empty-axis": lambda: np.save(images / "s1.npy", np.zeros((0, 10, 12))),
        "no-nibabel": lambda: (images / "s2.nii.gz").write_bytes(b"\x1f\x8b"),
    }
    changes.get(setup, lambda: None)()
    if setup == "no-nibabel":
        np.save(masks / "s2.npy", np.zeros((8, 10, 12)))


@pytest.mark.parametrize(
    "setup, kwargs, error, match",
    [
        ("missing", {}, ValueError, r"No such folder"),
        ("no-images", {}, ValueError, r"has no `images/` folder"),
        ("no-masks", {}, ValueError, r"has no `masks/` folder"),
        ("empty", {}, ValueError, r"holds no volume \(\.npy, \.nii, \.nii\.gz\)"),
        ("lonely", {}, ValueError, r"1 volumes have no partner in .*masks: lonely"),
        ("orphan", {}, ValueError, r"1 masks have no partner in .*images: orphan"),
        (
            "twice",
            {},
            ValueError,
            r"masks/s1\.nii\.gz and .*masks/s1\.npy share the name 's1'",
        ),
        (
            "size",
            {},
            ValueError,
            r"The volume .*images/s1\.npy is 8x10x12 \(depth x height x width\) "
            r"but its mask .*masks/s1\.npy is 8x10x11; a mask labels its volume "
            "voxel for voxel",
        ),
        ("sizes", {}, ValueError, r"differ in size \(.*s0\.npy: 4x4x4.*Pass `vol"),
        ("channels", {}, ValueError, r"different numbers of channels \(.*s0\.npy: 1"),
        (
            "mask-rgb",
            {},
            ValueError,
            r"mask .*s1\.npy has shape \(8, 10, 12, 3\).*re-save it as one, or "
            "remove the file or its pair",
        ),
        (
            "2d",
            {},
            ValueError,
            r"volume .*s1\.npy has shape \(10, 12\); volumes.*re-save it as one",
        ),
        (
            "not-npy",
            {},
            ValueError,
            r"^The volume .*s1\.npy is not a \.npy file: it does not begin with "
            r"numpy's header\. Save the array with numpy\.save, or remove the file",
        ),
        ("cut-short", {}, ValueError, r"Cannot read the volume .*s1\.npy"),
        (
            "empty-axis",
            {},
            ValueError,
            r"volume .*s1\.npy has shape \(0, 10, 12\), with an empty axis",
        ),
        ("ok", {"volume_size": (0, 4, 4)}, ValueError, r"`volume_size` must be"),
        ("ok", {"patch_size": (4, 4)}, ValueError, r"Received: patch_size=\(4, 4\)"),
        ("ok", {"foreground_fraction": 1.5}, ValueError, r"must be in \[0, 1\]"),
        ("ok", {"foreground_fraction": "half"}, TypeError, r"`foreground_fraction`"),
        ("ok", {"num_classes": None}, TypeError, r"`num_classes` must be a posi"),
        ("ok", {"ignore_class": 1}, ValueError, r"`ignore_class`=1 is also a class"),
        ("ok", {"subset": "training"}, ValueError, r"needs a `validation_split`"),
        ("ok", {"batch_size": 0}, ValueError, r"`batch_size` must be a positive"),
        (
            "ok",
            {"seed": -1},
            ValueError,
            r"`seed` must be a non-negative int \(or None\).*Received: seed=-1$",
        ),
        ("ok", {"seed": 1.5}, TypeError, r"`seed` must be a non-neg.*seed=1\.5$"),
        # tf.data's own TypeError named rerandomize_each_iteration
        ("ok", {"shuffle": "no"}, TypeError, r"^`shuffle` must be True or False\. "),
        # a folder scanned only after the arguments are checked
        ("missing", {"shuffle": "no"}, TypeError, r"^`shuffle` must be True or"),
        (
            None,
            {},
            TypeError,
            r"^`directory` must be the path of the folder that holds `images/` and "
            r"`masks/` \(a str or pathlib\.Path\)\. Received: directory=None$",
        ),
    ],
)
def test_bad_folders_and_arguments(tmp_path, setup, kwargs, error, match):
    root = tmp_path / "data" if setup else None
    if setup:
        _broken(root, setup)
    kwargs = {"num_classes": 3, "ignore_class": 255, **kwargs}
    with pytest.raises(error, match=match):
        volume_dataset_from_directory(root, **kwargs)


def test_nifti_without_nibabel_names_the_extra(tmp_path, monkeypatch):
    _broken(tmp_path, "no-nibabel")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import fails
    with pytest.raises(
        ImportError, match=r"s2\.nii\.gz needs nibabel.*seglayers\[medical\]"
    ):
        volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


@pytest.mark.parametrize(
    "mask, match",
    [
        (np.full((8, 10, 12), 7, np.uint8), r"holds class ids \[7\] outside \[0, 3\)"),
        (np.full((8, 10, 12), 0.5), r"holds fractional ids \[0\.5\]"),
    ],
)
def test_bad_ids_name_the_file(tmp_path, mask, match):
    _write(tmp_path, n=2)
    np.save(tmp_path / "masks" / "s1.npy", mask)
    with pytest.raises(Exception, match=r"The mask .*s1\.npy " + match):
        _all(volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255))


def test_non_finite_volumes_name_the_file(tmp_path):
    _write(tmp_path, n=2)
    volume = np.load(tmp_path / "images" / "s1.npy").astype(np.float32)
    volume[1, 2, 3], volume[4, 5, 6] = np.nan, np.inf
    np.save(tmp_path / "images" / "s1.npy", volume)
    with pytest.raises(
        Exception, match=r"The volume .*s1\.npy holds 2 NaN or infinite voxels"
    ):
        _all(volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255))


@pytest.mark.parametrize(
    "folder, array, match",
    [
        (
            "masks",
            np.ones((8, 10, 12), np.complex64),
            r"^The mask .*s1\.npy holds complex64 values; a mask holds class ids "
            r"\(integers, or floats that are whole numbers\)\. Save it again as "
            r"numbers, e\.g\. with numpy\.save\(path, array\.astype\('int32'\)\)\.$",
        ),
        (
            "masks",
            np.full((8, 10, 12), "1"),
            r"^The mask .*s1\.npy holds <U1 values; a mask holds class ids",
        ),
        (
            "images",
            np.ones((8, 10, 12), np.complex128),
            r"^The volume .*s1\.npy holds complex128 values; a volume holds "
            r"numbers \(integers or floats\)\. .*astype\('float32'\)\)\.$",
        ),
        (  # numpy's reason ends in a full stop: one, not two
            "images",
            np.empty((8, 10, 12), object),
            r"^Cannot read the volume .*s1\.npy: Array can't be memory-mapped: "
            r"Python objects in dtype\. Remove or replace the file\.$",
        ),
    ],
    ids=["complex-mask", "string-mask", "complex-volume", "object-volume"],
)
def test_files_of_no_numbers_are_refused_before_reading(tmp_path, folder, array, match):
    # A complex file was cast to its real part with only numpy's warning; a
    # string mask failed in a ufunc, naming no file.
    _write(tmp_path, n=2)
    np.save(tmp_path / folder / "s1.npy", array)
    with pytest.raises(ValueError, match=match):
        volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)


def test_whole_number_float_masks_are_ids(tmp_path):
    # NIfTI tools often store labels as floats; whole numbers are ids.
    written = _write(tmp_path, n=1)
    np.save(tmp_path / "masks" / "s0.npy", written[1][0].astype(np.float32))
    masks = _all(
        volume_dataset_from_directory(tmp_path, num_classes=3, ignore_class=255)
    )[1]
    np.testing.assert_array_equal(masks[0, ..., 0], written[1][0])
