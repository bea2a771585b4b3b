"""`seglayers train --spatial-dims 3`, and evaluate and predict on volumes
(`.npy` and NIfTI folders), on tiny volumes (16³, filters=4)."""

import csv
import importlib
import json
import os
import re

import keras
import numpy as np
import pytest

import seglayers
from seglayers import cli
from seglayers.cli import predict as cli_predict
from seglayers.datasets import volumes

TINY = ["--volume-size", "16", "16", "16", "--filters", "4", "--depth", "2"]
# 40 volumes: the built-in volumes' default split (0.05) validates 2.
TINY_RUN = ["--num-samples", "40", "--epochs", "1", "--verbose", "0", *TINY]
# A scan's affine: voxel sizes, an axis flip and an origin, as NIfTI stores.
AFFINE = np.array(
    [[0, 0, -1.5, 90.0], [0, 0.8, 0, -40.0], [2.0, 0, 0, 12.5], [0, 0, 0, 1]]
)
tf_data_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data loader"
)


def _saved_model(path, spatial_dims):
    model = seglayers.UNet(
        4, filters=4, depth=2, rescale=1 / 255, spatial_dims=spatial_dims
    )
    model.build((None,) * (spatial_dims + 1) + (1 if spatial_dims == 3 else 3,))
    model.save(path)
    return path


def _volume_folder(root, extension, shape=(16, 16, 16), count=2):
    """`root/images` and `root/masks` of the built-in volumes, as `.npy` or
    `.nii.gz` (with `AFFINE`, and a scaled scan: slope 2, intercept 10, a
    CT's display range and description)."""
    images, masks = volumes.load_data(count, shape, seed=1)
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i, (image, mask) in enumerate(zip(images[..., 0], masks[..., 0])):
        for folder, array in (("images", image), ("masks", mask.astype(np.uint8))):
            path = os.path.join(root, folder, f"v{i}{extension}")
            if extension == ".npy":
                np.save(path, array)
                continue
            import nibabel

            scan = nibabel.Nifti1Image(array, AFFINE)
            if folder == "images":
                scan.header.set_data_dtype(np.int16)
                scan.header.set_slope_inter(2.0, 10.0)
                # A CT's display range and description, not the mask's.
                scan.header["cal_min"], scan.header["cal_max"] = -1000, 3000
                scan.header["descrip"] = b"CT scan"
            nibabel.save(scan, path)
    return root


def _one_line_error(capsys):
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("seglayers: error: "), error
    return error[0]


def test_train_volumes_writes_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    # 38 volumes train, in 19 steps an epoch.
    command = ["train", "--spatial-dims", "3", *TINY_RUN, "--epochs", "2"]
    assert cli.main([*command, "--output", str(run)]) == 0
    assert sorted(os.listdir(run)) == [
        "best.keras",
        "history.csv",
        "metrics.json",
        "model.keras",
        "previews",
    ]
    assert sorted(os.listdir(run / "previews")) == [
        "epoch_001.png",
        "epoch_002.png",
        "final.png",
    ]
    with open(run / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"mean_iou", "iou/torus", "dice/sphere", "pixel_accuracy"} <= set(metrics)
    printed = capsys.readouterr().out
    assert (
        "Training UNet(num_classes=4, filters=4, depth=2, spatial_dims=3): " in printed
    )
    assert "volumes data set at 16x16x16" in printed and "torus" in printed
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.spatial_dims == 3
    outputs = model.predict(np.zeros((1, 16, 16, 16, 1)), verbose=0)
    assert outputs.shape == (1, 16, 16, 16, 4)
    # Up over 2 of the 38 steps (4%), then down along a cosine to 3e-5.
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    config = schedule["config"]
    assert (config["warmup_steps"], config["decay_steps"]) == (2, 36)
    assert int(model.optimizer.iterations) == 38
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 3e-5, rtol=1e-5)


def test_the_learning_rate_warms_up_and_decays_for_volumes_only():
    from argparse import Namespace

    from seglayers.cli._fit import learning_rate

    volumes_args = Namespace(spatial_dims=3, epochs=10)
    schedule = learning_rate(volumes_args, steps_per_epoch=240)
    # 2,400 steps: 96 up from 3e-5 to 3e-3, then 2,304 down to 3e-5, half
    # way (cos = 0) at 0.505 of the rate.
    rates = [float(schedule(step)) for step in (0, 48, 96, 96 + 1152, 2400)]
    expected = [3e-5, (3e-5 + 3e-3) / 2, 3e-3, 0.505 * 3e-3, 3e-5]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    # Without the steps (what the benchmarks compile), or for images: the rate.
    assert learning_rate(volumes_args) == 3e-3
    assert learning_rate(Namespace(spatial_dims=2, epochs=10), 240) == 1e-3


def test_the_built_in_volumes_train_once_and_a_folder_ten_epochs():
    from seglayers.cli import _parser
    from seglayers.cli.train import _resolve_defaults

    def resolved(*flags):
        args = _parser().parse_args(["train", *flags])
        _resolve_defaults(args)
        return args.epochs, args.validation_split

    assert resolved("--spatial-dims", "3") == (1, 0.05)
    # A folder is a fixed set of files: ten epochs, a fifth to validate.
    assert resolved("--spatial-dims", "3", "--data", "d") == (10, 0.2)
    assert resolved("--spatial-dims", "3", "--validation-split", "0.3") == (1, 0.3)
    assert resolved("--spatial-dims", "3", "--data", "d", "--epochs", "2") == (2, 0.2)
    assert resolved() == resolved("--data", "d") == (10, 0.2)


@tf_data_only
def test_train_volumes_from_a_folder(tmp_path, capsys):
    data = _volume_folder(tmp_path / "data", ".npy", count=5)
    run = tmp_path / "run"
    command = ["train", "--spatial-dims", "3", "--data", str(data), *TINY_RUN]
    assert cli.main([*command, "--num-classes", "4", "--output", str(run)]) == 2
    assert _one_line_error(capsys) == (
        f"seglayers: error: --num-samples is for the built-in data; --data {data} "
        "trains on all of its files (leave --num-samples out)."
    )
    command.remove("--num-samples"), command.remove("40")
    assert cli.main([*command, "--num-classes", "4", "--output", str(run)]) == 0
    assert f"on {data} at 16x16x16" in capsys.readouterr().out
    # The schedule spans the folder's steps: 4 volumes train, in 2 batches.
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    config = model.optimizer.get_config()["learning_rate"]["config"]
    assert config["warmup_steps"] + config["decay_steps"] == 2


@tf_data_only
@pytest.mark.parametrize("extension", [".npy", ".nii.gz"])
def test_evaluate_volumes(tmp_path, capsys, extension):
    pytest.importorskip("nibabel")
    model = _saved_model(tmp_path / "m.keras", 3)
    data = _volume_folder(tmp_path / "data", extension)
    report = tmp_path / "eval.json"
    command = ["evaluate", str(model), "--data", str(data), *TINY[:4]]
    assert cli.main([*command, "--json", str(report)]) == 0
    results = json.loads(report.read_text())
    assert {"mean_iou", "iou/3", "dice/0", "pixel_accuracy"} <= set(results)
    assert f"pixel accuracy: {results['pixel_accuracy']:.3f}" in capsys.readouterr().out


def test_a_default_size_the_model_cannot_take_is_called_the_default(tmp_path, capsys):
    # Before, "cannot take --volume-size 24 24 24", a flag not given.
    model = seglayers.UNet(2, filters=4, depth=5, spatial_dims=3)
    model.build((None, None, None, None, 1))
    model.save(tmp_path / "m.keras")
    command = ["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path)]
    assert cli.main(command) == 2
    assert re.search(
        r"m\.keras cannot take --volume-size 24 24 24 \(the default\): `UNet` "
        r"with depth=5 halves the input 5 times, so depth, height and width must "
        r"be at least 32\. Give the size it trained on\.$",
        _one_line_error(capsys),
    )


def test_evaluate_refuses_a_volume_size_the_model_cannot_take(tmp_path, capsys):
    # Before, the model refused the batches, and the message asked for a
    # smaller --depth, which evaluate has not.
    model = _saved_model(tmp_path / "m.keras", 3)
    data = tmp_path / "data"  # never read
    command = ["evaluate", str(model), "--data", str(data)]
    assert cli.main([*command, "--volume-size", "2", "2", "2"]) == 2
    assert re.search(
        r"m\.keras cannot take --volume-size 2 2 2: `UNet` with depth=2 halves the "
        r"input 2 times, so depth, height and width must be at least 4\. Give the "
        r"size it trained on\.$",
        _one_line_error(capsys),
    )


def test_predict_tiles_a_scan_thinner_than_the_models_smallest_input(tmp_path, capsys):
    # 3 slices for a model that takes at least 4: tiled at the scan's own
    # size (larger than --volume-size along the other axes), zero-padded.
    model = _saved_model(tmp_path / "m.keras", 3)
    np.save(tmp_path / "thin.npy", np.ones((20, 3, 20), np.float32))
    output = tmp_path / "out"
    command = ["predict", str(model), str(tmp_path / "thin.npy"), "--output"]
    assert cli.main([*command, str(output), "--volume-size", "8", "8", "8"]) == 0
    assert np.load(output / "thin_mask.npy").shape == (20, 3, 20)


def test_predict_volumes_npy_and_nifti(tmp_path, capsys, monkeypatch):
    nibabel = pytest.importorskip("nibabel")
    # The module (`seglayers.inference.predict_tiled` is also the function).
    tiled = importlib.import_module("seglayers.inference.predict_tiled")

    model = _saved_model(tmp_path / "m.keras", 3)
    # 20 > 16 along the depth: predicted in 16³ tiles at its own size.
    shape = (20, 16, 16)
    npy = _volume_folder(tmp_path / "npy", ".npy", shape, count=1) / "images"
    nifti = _volume_folder(tmp_path / "nii", ".nii.gz", shape, count=1) / "images"
    real, calls = tiled.predict_tiled, []

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(tiled, "predict_tiled", counted)
    output = tmp_path / "out"
    command = ["predict", str(model), str(npy), str(nifti / "v0.nii.gz")]
    assert cli.main([*command, "--output", str(output), *TINY[:4]]) == 2  # same name
    assert "share a file name" in _one_line_error(capsys)
    for folder in (npy, nifti):
        command = ["predict", str(model), str(folder), *TINY[:4]]
        assert cli.main([*command, "--output", str(output / folder.parent.name)]) == 0
    assert calls == [(16, 16, 16)] * 2
    ids = np.load(output / "npy" / "v0_mask.npy")
    assert ids.shape == shape and ids.dtype == np.uint8 and ids.max() < 4
    scan = nibabel.load(nifti / "v0.nii.gz")
    mask = nibabel.load(output / "nii" / "v0_mask.nii.gz")
    np.testing.assert_array_equal(mask.affine, scan.affine)
    assert mask.header.get_zooms() == scan.header.get_zooms()
    assert mask.header["sform_code"] == scan.header["sform_code"]
    # The ids as stored: the scan's slope and intercept are not applied.
    assert mask.get_data_dtype() == np.uint8 and mask.dataobj.slope == 1
    ids = np.asarray(mask.dataobj)
    assert ids.shape == shape and ids.max() < 4 and mask.dataobj.inter == 0
    # Shown as labels, over their own range, not the scan's -1000 to 3000.
    assert (mask.header["cal_min"], mask.header["cal_max"]) == (0, ids.max())
    assert mask.header.get_intent()[0] == "label"
    assert mask.header["descrip"].tobytes().startswith(b"seglayers predict")
    assert os.listdir(output / "nii") == ["v0_mask.nii.gz"]


def test_predict_stores_volume_ids_as_it_stores_image_ids(tmp_path):
    # As for 2-D masks: 16 bits for more than 255 classes (it was int32),
    # and the type's largest value for a voxel with no class (a NaN score);
    # a cast to uint8 made that -1 class 255 whenever no id passed 255.
    keras.utils.set_random_seed(0)
    model = seglayers.UNet(300, filters=4, depth=2, spatial_dims=3)
    model.build((None, None, None, None, 1))
    model.save(tmp_path / "m.keras")
    volume = np.random.default_rng(0).uniform(0, 1, (16, 16, 16))
    np.save(tmp_path / "v.npy", volume.astype("float32"))
    command = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "v.npy"), *TINY[:4]]
    assert cli.main([*command, "--output", str(tmp_path / "out")]) == 0
    ids = np.load(tmp_path / "out" / "v_mask.npy")
    assert ids.dtype == np.uint16 and ids.shape == (16, 16, 16) and ids.max() < 300
    weights = model.get_weights()
    assert weights[-1].shape == (300,)  # the head's bias
    model.set_weights([*weights[:-1], np.full((300,), np.nan, "float32")])
    model.save(tmp_path / "nan.keras")
    command = [
        "predict",
        str(tmp_path / "nan.keras"),
        str(tmp_path / "v.npy"),
        *TINY[:4],
    ]
    assert cli.main([*command, "--output", str(tmp_path / "nan")]) == 0
    ids = np.load(tmp_path / "nan" / "v_mask.npy")
    assert ids.dtype == np.uint16 and (ids == 65535).all()


def test_a_nifti_masks_display_range_ends_at_its_largest_class(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    from seglayers.cli import _volumes

    ids = np.zeros((4, 4, 4), np.uint8)
    ids[0, 0, :2] = 3, 255  # class 3 and a voxel with no class
    source = nibabel.Nifti1Image(np.zeros((4, 4, 4), np.int16), AFFINE)
    _volumes.write_mask(ids, str(tmp_path / "m.nii.gz"), source)
    mask = nibabel.load(tmp_path / "m.nii.gz")
    assert (mask.header["cal_min"], mask.header["cal_max"]) == (0, 3)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), ids)


def test_predict_reads_one_volume_at_a_time_and_writes_only_when_all_succeed(
    tmp_path, capsys, monkeypatch
):
    model = _saved_model(tmp_path / "m.keras", 3)
    folder = _volume_folder(tmp_path / "data", ".npy", count=3) / "images"
    # The last volume holds a NaN, found when it is read: after two
    # predictions, and before anything is written.
    broken = np.load(folder / "v2.npy")
    broken[0, 0, 0] = np.nan
    np.save(folder / "v2.npy", broken)
    kind, events = cli_predict._VOLUMES, []
    read, predict = kind.read, kind.predict

    def reading(path):
        events.append(f"read {os.path.basename(path)}")
        return read(path)

    def predicting(model, item, args):
        events.append("predict")
        return predict(model, item, args)

    monkeypatch.setattr(kind, "read", staticmethod(reading))
    monkeypatch.setattr(kind, "predict", staticmethod(predicting))
    new = ["predict", str(model), str(folder), "--output", str(tmp_path / "a" / "b")]
    assert cli.main([*new, *TINY[:4]]) == 2
    assert "v2.npy holds 1 NaN or infinite voxels" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists()  # the folders it made, removed
    events.clear()
    output = tmp_path / "out"
    command = ["predict", str(model), str(folder), "--output", str(output), *TINY[:4]]
    assert cli.main(command) == 2
    assert "v2.npy holds 1 NaN or infinite voxels" in _one_line_error(capsys)
    # One volume in memory at a time (all were read before the first
    # prediction, and all results kept until the last).
    assert events == ["read v0.npy", "predict", "read v1.npy", "predict", "read v2.npy"]
    assert not output.exists()
    # Into a folder that exists: neither masks nor the staging folder stay.
    output.mkdir()
    (output / "kept.txt").write_text("mine")
    assert cli.main(command) == 2
    assert os.listdir(output) == ["kept.txt"]
    os.remove(folder / "v2.npy")
    assert cli.main(command) == 0
    assert sorted(os.listdir(output)) == ["kept.txt", "v0_mask.npy", "v1_mask.npy"]


@pytest.mark.parametrize(
    "volume, args, message",
    [
        (
            np.full((16, 16, 16), np.nan, np.float32),
            [],
            r"The volume .*v\.npy holds 4096 NaN or infinite voxels \(or values "
            r"beyond float32.s range, about 3\.4e38, which volumes are read as\); "
            r"replace them",
        ),
        (
            np.zeros((0, 16, 16), np.float32),
            [],
            r"The volume .*v\.npy has shape \(0, 16, 16\);.*none of them empty\.",
        ),
        (
            np.zeros((16, 16, 16), np.float32),
            ["--volume-size", "16", "16", "0", "--no-tiling"],
            r"--volume-size must be the size the model trained on, at least 1 on "
            r"every axis; got 16 16 0\.$",
        ),
        (
            np.zeros((16, 16, 16), np.float32),
            ["--volume-size", "2", "2", "2"],
            r"m\.keras cannot take --volume-size 2 2 2: `UNet` with depth=2 halves "
            r"the input 2 times, so depth, height and width must be at least 4\. "
            r"Give the size it trained on\.$",
        ),
        (  # Raised in UNet.call, which Keras wraps: its own message is kept.
            np.zeros((16, 16, 16, 2), np.float32),
            [],
            r"^seglayers: error: Cannot predict .*v\.npy: This `UNet` was built "
            r"for 1 input channel\. Received: input shape \(1, 24, 24, 24, 2\) "
            r"with 2 channels\.",
        ),
    ],
)
def test_predict_refuses_volumes_it_cannot_segment(
    tmp_path, capsys, volume, args, message
):
    model = _saved_model(tmp_path / "m.keras", 3)
    np.save(tmp_path / "v.npy", volume)
    output = tmp_path / "out"
    command = ["predict", str(model), str(tmp_path / "v.npy"), "--output"]
    assert cli.main([*command, str(output), *args]) == 2
    assert re.search(message, _one_line_error(capsys))
    assert not output.exists()


def test_built_in_data_too_large_for_memory_is_a_usage_error(
    tmp_path, capsys, monkeypatch
):
    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.49 TiB")

    monkeypatch.setattr(volumes, "load_data", too_large)
    run = tmp_path / "run"
    command = ["train", "--spatial-dims", "3", *TINY_RUN, "--output", str(run)]
    assert cli.main(command) == 2
    assert _one_line_error(capsys) == (
        "seglayers: error: --num-samples 40 at 16x16x16 does not fit in memory; "
        "use fewer samples or a smaller --volume-size."
    )
    assert not run.exists()


def _image_folder(root):
    from PIL import Image

    for folder in ("images", "masks"):
        os.makedirs(root / folder)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "a.png")
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "fpn"],
            "--model fpn is a 2-D model (it decodes a 2-D image encoder); with "
            "--spatial-dims 3 use --model unet or unetplusplus.",
        ),
        (["--encoder", "resnet50"], "--encoder needs --spatial-dims 2"),
        (
            ["--image-size", "16", "16"],
            "--image-size is for images, but --spatial-dims is 3 (volumes); give "
            "--volume-size D H W instead.",
        ),
        (["--volume-size", "16", "16", "8"], "--volume-size must be a triple of ints"),
        (["--data", "IMAGES", "--num-classes", "2"], "trains on volumes, but"),
    ],
)
def test_train_volume_errors(tmp_path, capsys, args, message):
    args = [
        str(_image_folder(tmp_path / "images")) if a == "IMAGES" else a for a in args
    ]
    run = tmp_path / "run"
    command = ["train", "--spatial-dims", "3", "--epochs", "1"]
    if "--data" not in args:  # A folder trains on its files: no --num-samples.
        command += ["--num-samples", "40"]
    assert cli.main([*command, *args, "--output", str(run)]) == 2
    assert message in _one_line_error(capsys)
    assert not run.exists()


def test_volume_size_needs_spatial_dims_3(tmp_path, capsys):
    command = ["train", "--volume-size", "16", "16", "16"]
    assert cli.main([*command, "--output", str(tmp_path / "run")]) == 2
    assert "--volume-size is for volumes, but --spatial-dims is 2 (images); give " in (
        _one_line_error(capsys)
    )


@pytest.mark.parametrize(
    "command, dims, data, message",
    [
        ("evaluate", 3, "images", "is a 3-D model (it takes volumes), but"),
        ("evaluate", 2, "volumes", "is a 2-D model (it takes images), but"),
        ("predict", 3, "images", "holds images; give it volumes, or use a model"),
        ("predict", 2, "volumes", "trained with --spatial-dims 3 for volumes."),
        ("predict", 3, "image-size", "--image-size is for images, but"),
        (
            "predict",
            3,
            "flat",
            "has shape (16, 16); volumes must be (depth, height, width) or",
        ),
    ],
)
def test_images_and_volumes_do_not_mix(tmp_path, capsys, command, dims, data, message):
    model = str(_saved_model(tmp_path / "m.keras", dims))
    if data == "volumes":
        folder = _volume_folder(tmp_path / "data", ".npy", count=1)
    else:
        folder = _image_folder(tmp_path / "data")
    extra = []
    if data == "image-size":
        extra = ["--image-size", "16", "16"]
        folder = _volume_folder(tmp_path / "vol", ".npy", count=1)
    elif data == "flat":
        np.save(tmp_path / "flat.npy", np.zeros((16, 16)))
    output = tmp_path / "out"
    if command == "evaluate":
        argv = ["evaluate", model, "--data", str(folder)]
    else:
        target = tmp_path / "flat.npy" if data == "flat" else folder / "images"
        argv = ["predict", model, str(target), "--output", str(output)]
    assert cli.main(argv + extra) == 2
    assert message in _one_line_error(capsys)
    assert not output.exists()


@pytest.mark.parametrize(
    "dims, size, other, written",
    [
        (3, ["--volume-size", "16", "16", "16"], "images (a.png)", "v0_mask.npy"),
        (2, ["--image-size", "16", "16"], "volumes (v0.npy)", "a_mask.png"),
    ],
)
def test_predict_notes_the_files_of_the_other_kind_it_leaves_out(
    tmp_path, capsys, dims, size, other, written
):
    from PIL import Image

    model = str(_saved_model(tmp_path / "m.keras", dims))
    folder = _volume_folder(tmp_path / "data", ".npy", count=1) / "images"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "a.png")
    output = tmp_path / "out"
    argv = ["predict", model, str(folder), "--output", str(output), *size]
    assert cli.main(argv) == 0
    assert (
        f"seglayers: note: {folder} also holds 1 {other}, which {model} does not "
        "take; they are left out." in capsys.readouterr().err
    )
    assert written in os.listdir(output)
