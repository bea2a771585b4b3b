import json
import os
import subprocess
import sys
import sysconfig

import keras
import numpy as np
import pytest

import seglayers
from seglayers import cli
from tests.harness import PROJECT_ROOT

# A tiny model on 32×32 images, quietly. 20 samples: 16 train in two full
# batches of 8 (a last, smaller batch traces the training step again).
SMALL = ["--image-size", "32", "32", "--filters", "4", "--depth", "2", "--verbose", "0"]
TINY = ["--num-samples", "20", "--epochs", "2", "--batch-size", "8", *SMALL]


def test_train_writes_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--output", str(run)]) == 0
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
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "mean_iou",
        "iou/background",
        "iou/triangle",
        "dice/circle",
        "pixel_accuracy",
        "training_seconds",
    ):
        assert key in metrics
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and "val_mean_iou" in history[0]
    assert len(history) == 3  # header + 2 epochs
    printed = capsys.readouterr().out
    assert "mean" in printed and "pixel accuracy" in printed and "triangle" in printed
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape == (1, 32, 32, 4)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".seglayers-run")] == []


def test_fit_reads_batches_without_tf_data_autotuning():
    # Autotuning off: see `fit_dataset` (epochs began up to 30 s late).
    from seglayers.cli._fit import fit_dataset

    images = np.arange(10, dtype="float32").reshape(5, 1, 1, 2)
    masks = np.arange(5).reshape(5, 1, 1, 1)
    shuffled = fit_dataset((images, masks), 2, shuffle_seed=0)
    in_order = fit_dataset((images, masks), 2)
    for dataset in (shuffled, in_order):
        assert dataset.options().autotune.enabled is False
        # Taken in numpy: the arrays' dtypes and per-sample shapes, known.
        image_spec, mask_spec = dataset.element_spec
        assert (image_spec.dtype, image_spec.shape.as_list()) == (
            "float32",
            [None, 1, 1, 2],
        )
        assert (mask_spec.dtype, mask_spec.shape.as_list()) == (
            "int64",
            [None, 1, 1, 1],
        )

    def ids(dataset):
        return [m.ravel().tolist() for _, m in dataset.as_numpy_iterator()]

    epochs = [ids(shuffled) for _ in range(2)]
    # Every sample once an epoch, in batches of 2, in a new order each epoch
    # (the same one for the same seed).
    for epoch in epochs:
        assert [len(b) for b in epoch] == [2, 2, 1]
        assert sorted(sum(epoch, [])) == [0, 1, 2, 3, 4]
    assert epochs[0] != epochs[1]
    again = fit_dataset((images, masks), 2, shuffle_seed=0)
    assert ids(again) == epochs[0]
    assert ids(in_order) == [[0, 1], [2, 3], [4]]
    for image, mask in in_order.as_numpy_iterator():
        np.testing.assert_array_equal(image[:, 0, 0, 0], 2 * mask.ravel())
    # A dataset (a folder loader's) keeps its elements and loses autotuning.
    assert fit_dataset(in_order, 2).options().autotune.enabled is False


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    assert cli.main(["train", *TINY, "--output", str(run)]) == 2
    error = capsys.readouterr().err
    assert error.strip().splitlines() == [
        f"seglayers: error: {run} exists and is not empty; choose another "
        "--output or pass --overwrite."
    ]
    assert os.listdir(run) == ["keep.txt"]


@pytest.mark.parametrize(
    "case, message",
    [
        (".", "--output . is the current folder; "),
        ("..", "--output .. holds the current folder; "),
        ("data", "--output {tmp}/data is --data {tmp}/data; "),
        ("data/run", "--output {tmp}/data/run lies inside --data {tmp}/data; "),
        ("", "--output {tmp} holds --data {tmp}/data; "),
    ],
)
def test_train_output_apart_from_the_user_files(
    tmp_path, monkeypatch, capsys, case, message
):
    # --overwrite used to empty the current folder (then fail on rmdir '.')
    # or replace --data by the run; refused before any training, with or
    # without --overwrite.
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "0.png").write_text("mine")
    (tmp_path / "keep.txt").write_text("mine")
    if case in (".", ".."):
        monkeypatch.chdir(data / "images" if case == ".." else tmp_path)
    output = case if case in (".", "..") else str(tmp_path / case)
    for overwrite in ([], ["--overwrite"]):
        command = ["train", *TINY]
        if case not in (".", ".."):
            command = ["train", "--data", str(data), *FOLDER_TRAIN]
        assert cli.main([*command, "--output", output, *overwrite]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1, error
        assert error[0] == (
            "seglayers: error: "
            + message.format(tmp=tmp_path)
            + "give the run a folder of its own, e.g. --output runs/mine."
        )
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "0.png",
        "data",
        "images",
        "keep.txt",
    ]


def test_overwrite_replaces_only_the_run_files(tmp_path):
    # Once a run is done, --overwrite moves each of its files and folders in
    # place of the one of that name; the other files in RUN_DIR (which it
    # used to delete with the folder) are kept.
    from seglayers.cli._common import _move_into_place

    staging = tmp_path / ".seglayers-run-x"
    (staging / "previews").mkdir(parents=True)
    (staging / "previews" / "final.png").write_text("new")
    for name in ("model.keras", "best.keras", "history.csv", "metrics.json"):
        (staging / name).write_text("new")
    run = tmp_path / "run"
    (run / "previews").mkdir(parents=True)
    (run / "previews" / "epoch_009.png").write_text("old")
    (run / "model.keras").write_text("old")
    (run / "notes.txt").write_text("mine")
    (run / "data").mkdir()
    _move_into_place(str(staging), str(run), overwrite=True)
    assert sorted(os.listdir(run)) == [
        "best.keras",
        "data",
        "history.csv",
        "metrics.json",
        "model.keras",
        "notes.txt",
        "previews",
    ]
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "model.keras").read_text() == "new"
    assert os.listdir(run / "previews") == ["final.png"]
    assert os.listdir(tmp_path) == ["run"]


def test_a_failed_run_writes_nothing(tmp_path, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(keras.Model, "fit", broken_fit)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(["train", *TINY, "--output", str(run)])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1; got 0."),
        (["--validation-split", "1.5"], "--validation-split must be between 0 and 1"),
        (["--num-classes", "7"], "--num-classes must be 2, 3 or 4"),
        (["--depth", "6"], "halves the input 6 times"),
        (
            ["--num-samples", "2"],
            "--num-samples 2 with --validation-split 0.2 leaves no sample to "
            "validate; use more samples or a larger --validation-split.",
        ),
        (
            ["--num-samples", "1"],
            "--num-samples must be at least 2, one to train and one to validate; "
            "got 1.",
        ),
        (
            ["--output-in-a-file"],
            "lies inside {tmp}/afile, which is a file; choose another --output.",
        ),
        # Numpy's words were shown, without the flag ("expected non-negative
        # integer"); 2**32 was a traceback from `keras.utils.set_random_seed`.
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295; got -1."),
        (
            ["--seed", "4294967296"],
            "--seed must be an integer from 0 to 4294967295; got 4294967296.",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    if args == ["--output-in-a-file"]:
        (tmp_path / "afile").write_text("a file")
        args, run = [], tmp_path / "afile" / "run"
        message = message.format(tmp=tmp_path)
    assert cli.main(["train", *TINY, *args, "--output", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("seglayers: error: ")
    assert message in error[0]
    assert not run.exists()


def test_train_unet_plus_plus(tmp_path, capsys):
    run = tmp_path / "run"
    command = ["train", "--model", "unetplusplus", "--num-samples", "16"]
    assert cli.main([*command, "--epochs", "1", *SMALL, "--output", str(run)]) == 0
    assert "Training UNetPlusPlus(num_classes=4, filters=4, depth=2)" in (
        capsys.readouterr().out
    )
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert type(model) is seglayers.UNetPlusPlus and len(model.nodes) == 3
    assert model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape == (1, 32, 32, 4)
    assert "mean_iou" in json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], ("UNet", {"filters": 16, "depth": 3, "rescale": 1 / 255})),
        (["--model", "unetplusplus", "--depth", "2"], ("UNetPlusPlus", {"depth": 2})),
        # Over an encoder (fpn's default one too) the model's defaults hold.
        (["--model", "fpn"], ("FPN", {})),
        (["--model", "fpn", "--depth", "4"], ("FPN", {"depth": 4})),
        (
            ["--model", "unet", "--encoder", "resnet50"],
            ("UNet", {"encoder": "resnet50"}),
        ),
    ],
)
def test_model_arguments(flags, expected):
    from seglayers.cli import _parser
    from seglayers.cli.train import _check_train_args, _model_arguments

    args = _parser().parse_args(["train", *flags])
    _check_train_args(args)
    name, kwargs = _model_arguments(args)
    assert name == expected[0]
    kwargs.pop("num_classes")
    for key, value in expected[1].items():
        assert kwargs.pop(key) == value, key
    if name != "UNetPlusPlus":
        assert not kwargs, kwargs


# ~1 min on this machine (a MobileNetV3 trains); one model is enough, the
# command reaches every model through the same table.
@pytest.mark.slow
@pytest.mark.parametrize("model, name", [("deeplabv3plus", "DeepLabV3Plus")])
def test_train_models_over_an_encoder(tmp_path, capsys, model, name):
    run = tmp_path / "run"
    command = ["train", "--model", model, "--encoder", "mobilenetv3small"]
    small = ["--num-samples", "16", "--epochs", "1", "--image-size", "32", "32"]
    assert cli.main([*command, *small, "--verbose", "0", "--output", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"Training {name}(num_classes=4, encoder='mobilenetv3small')" in printed
    loaded = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert type(loaded) is getattr(seglayers, name)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "deeplabv3plus"],
            "--filters does not apply to --model deeplabv3plus; it sets neither.",
        ),
        (
            ["--model", "fpn", "--encoder", "mobilenetv3small"],
            "--filters does not apply to --model fpn; it sets --depth.",
        ),
        (["--encoder", "resnet9"], "--encoder resnet9 is not a known encoder"),
        (
            ["--encoder", "mobilenetv3small", "--depth", "6"],
            "With an `encoder`, --depth can be at most 5",
        ),
    ],
)
def test_bad_model_and_encoder_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, *args, "--output", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("seglayers: error: "), error
    assert message in error[0], error
    assert not run.exists()


def test_bad_model_name_exits_2(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--model", "segnet"])
    assert exit.value.code == 2
    assert "invalid choice: 'segnet'" in capsys.readouterr().err


def _folder(root, n=8, size=32, max_id=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i}.jpg")
        mask = rng.integers(0, max_id, size=(size, size), dtype=np.uint8)
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return root


def _damage(path):
    """`path` (a JPEG) made a PNG damaged inside, header and end sound."""
    from PIL import Image

    with Image.open(path) as image:
        image.save(path.with_suffix(".png"))
    os.remove(path)
    damaged = bytearray(path.with_suffix(".png").read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 20] = bytes(20)
    path.with_suffix(".png").write_bytes(bytes(damaged))


FOLDER_TRAIN = ["--num-classes", "3", "--epochs", "1", "--batch-size", "4", *SMALL]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data loader")
def test_train_evaluate_predict_on_one_folder(tmp_path, capsys):
    from PIL import Image

    data = _folder(tmp_path / "data")
    run = tmp_path / "run"
    assert (
        cli.main(["train", "--data", str(data), *FOLDER_TRAIN, "--output", str(run)])
        == 0
    )
    assert (run / "model.keras").exists()
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert (
        cli.main(
            [
                "evaluate",
                str(run / "model.keras"),
                "--data",
                str(data),
                "--image-size",
                "32",
                "32",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    results = json.loads(report.read_text())
    assert {"mean_iou", "iou/0", "iou/2", "dice/1", "pixel_accuracy"} <= set(results)
    assert f"{results['mean_iou']:6.3f}" in printed
    assert f"pixel accuracy: {results['pixel_accuracy']:.3f}" in printed
    # --overwrite replaces an existing --json file, atomically.
    report.write_text("old")
    again = ["evaluate", str(run / "model.keras"), "--data", str(data)]
    again += ["--image-size", "32", "32", "--json", str(report), "--overwrite"]
    assert cli.main(again) == 0
    assert json.loads(report.read_text()) == results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "eval.json", "run"]
    predictions = tmp_path / "predictions"
    command = ["predict", str(run / "model.keras"), str(data / "images")]
    assert cli.main(command + ["--output", str(predictions)]) == 0
    names = sorted(os.listdir(data / "images"))
    assert sorted(os.listdir(predictions)) == sorted(
        f"{name[:-4]}_{kind}.png" for name in names for kind in ("mask", "overlay")
    )
    with Image.open(predictions / "0_mask.png") as mask:
        assert mask.mode == "L" and mask.size == (32, 32)
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}


def _saved_plain_model(path):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)])
    model.save(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-data", "No such folder"),
        ("no-masks-folder", "has no `masks/` folder"),
        (
            "ids-too-large",
            "class ids [3, 4] outside [0, 3), and no --ignore-class is set.",
        ),
        ("no-num-classes", "--data needs --num-classes"),
        ("broken-image", "Cannot read the image"),
        # Damaged inside: the header and end are sound, TensorFlow's decoder
        # fails mid-epoch ("Invalid PNG data") and names no file.
        ("damaged-image", "images/3.png of --data (Invalid PNG data, size"),
    ],
)
def test_train_bad_data(tmp_path, capsys, case, message):
    if keras.backend.backend() != "tensorflow" and case == "ids-too-large":
        pytest.skip("tf.data loader")
    data = tmp_path / "data"
    if case == "no-masks-folder":
        (data / "images").mkdir(parents=True)
    elif case == "ids-too-large":
        _folder(data, max_id=5)
    elif case == "broken-image":
        _folder(data)
        (data / "images" / "3.jpg").write_bytes(b"\x00 truncated")
    elif case == "damaged-image":
        _damage(_folder(data) / "images" / "3.jpg")
    args = [
        "train",
        "--data",
        str(data),
        *FOLDER_TRAIN,
        "--output",
        str(tmp_path / "run"),
    ]
    if case == "no-num-classes":
        args.remove("--num-classes")
        args.remove("3")
    assert cli.main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert "--ignore-class None" not in error[0]
    assert not (tmp_path / "run").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".seglayers")]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "No such model file"),
        ("corrupt", "is not a readable .keras model"),
        ("not-seglayers", "holds a Sequential, not a seglayers SegmentationModel"),
    ],
)
def test_evaluate_bad_model(tmp_path, capsys, case, message):
    path = tmp_path / "m.keras"
    if case == "corrupt":
        path.write_bytes(b"not a zip file")
    elif case == "not-seglayers":
        _saved_plain_model(path)
    report = tmp_path / "eval.json"
    code = cli.main(
        ["evaluate", str(path), "--data", str(tmp_path), "--json", str(report)]
    )
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not report.exists()


def test_only_a_failed_decode_sends_to_the_files(tmp_path):
    from seglayers.cli._common import data_error

    data = _folder(tmp_path / "data")
    decode = Exception("{{node decode_image/DecodeImage}} Invalid PNG data")
    assert data_error(decode, str(data)) is None  # every file decodes
    _damage(data / "images" / "3.jpg")
    assert "3.png of --data" in str(data_error(decode, str(data)))
    other = Exception("{{node functional_1/Decoder_2/conv2d/Conv2D}} OOM")
    assert data_error(other, str(data)) is None  # a model's layer: no scan
    assert data_error(decode, str(tmp_path / "gone")) is None  # no such folder


def test_evaluate_names_a_damaged_file(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    _damage(data / "images" / "3.jpg")
    _saved_unet(tmp_path / "m.keras")
    command = ["evaluate", str(tmp_path / "m.keras"), "--data", str(data)]
    assert cli.main(command + ["--image-size", "32", "32"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "images/3.png of --data (Invalid PNG" in error[0]


@pytest.mark.parametrize(
    "where, message", [("no-folder", "No such folder for --json"), (".", "is a folder")]
)
def test_evaluate_checks_json_before_the_work(tmp_path, capsys, where, message):
    report = tmp_path / "missing" / "eval.json" if where == "no-folder" else tmp_path
    # The model is missing too: the --json mistake is named first, not after
    # a whole evaluation.
    command = ["evaluate", str(tmp_path / "m.keras"), "--data", str(tmp_path)]
    assert cli.main([*command, "--json", str(report)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error


@pytest.mark.parametrize("case", ["exists", "overwrite-the-model"])
def test_evaluate_json_keeps_existing_files(tmp_path, capsys, case):
    # --json used to replace any file, the model being evaluated included.
    model = tmp_path / "m.keras"
    model.write_text("the model")
    report = tmp_path / "eval.json"
    report.write_text("mine")
    command = ["evaluate", str(model), "--data", str(tmp_path), "--json"]
    if case == "exists":
        command += [str(report)]
        message = (
            f"--json {report} exists; choose another --json file or pass --overwrite."
        )
    else:
        command += [str(model), "--overwrite"]
        message = (
            f"--json {model} is the model being evaluated ({model}); give another "
            "file for the results, e.g. --json results.json."
        )
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"seglayers: error: {message}"]
    assert model.read_text() == "the model" and report.read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["eval.json", "m.keras"]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A `seglayers train` run's `model.keras`, trained once per worker for
    the predict tests, which read it and never write it (a training run
    each was 5 runs on both backends)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--output", str(run)]) == 0
    return run / "model.keras"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data loader")
def test_evaluate_names_the_classes_as_train_did(tmp_path, capsys, trained_model):
    # `train` saves the class names in the model's compiled MeanIoU; the
    # table of `evaluate` used to show ids (0, 1, ...) instead.
    data = _folder(tmp_path / "data", n=4, size=32)
    report = tmp_path / "eval.json"
    command = ["evaluate", str(trained_model), "--data", str(data)]
    assert cli.main([*command, "--image-size", "32", "32", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(report.read_text())
    assert {"iou/background", "iou/circle", "dice/triangle"} <= set(results)
    assert "circle" in printed and "triangle" in printed


def test_predict_writes_masks_at_the_original_size(trained_model, tmp_path, capsys):
    from PIL import Image

    model = trained_model
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (40, 50)), ("b", (20, 30))):
        pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"{name}.png")
    out = tmp_path / "out"
    command = ["predict", str(model), str(inputs), "--output", str(out)]
    command += ["--image-size", "32", "32"]
    assert cli.main(command) == 0
    assert sorted(os.listdir(out)) == [
        "a_mask.png",
        "a_overlay.png",
        "b_mask.png",
        "b_overlay.png",
    ]
    with Image.open(out / "a_mask.png") as mask:
        assert mask.mode == "L" and mask.size == (50, 40)
        assert np.asarray(mask).max() < 4
    with Image.open(out / "b_overlay.png") as picture:
        assert picture.mode == "RGB" and picture.size == (30, 20)
    # Refuses to overwrite without --overwrite.
    assert cli.main(command) == 2
    assert "exists; choose another --output" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, message",
    [
        # `--json ""` was skipped; train's `--output ""` became runs/<time>.
        (["evaluate", "m.keras", "--data", "d", "--json", ""], "--json is empty"),
        (["train", *TINY, "--output", ""], "--output is empty"),
        (["predict", "m.keras", "in", "--output", ""], "--output is empty"),
        (["predict", "m.keras", "", "--output", "out"], "IMAGE_OR_DIR is empty"),
        (["export", "", "out"], "MODEL is empty"),
        (["export", "m.keras", ""], "OUT is empty"),
        # splitext(".onnx") has no extension: it wrote a hidden SavedModel.
        (["export", "m.keras", ".onnx"], "OUT .onnx is an extension without a name"),
    ],
)
def test_empty_and_nameless_paths_are_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, command, message
):
    monkeypatch.chdir(tmp_path)
    if command[0] == "export":
        _saved_unet(tmp_path / "m.keras")
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert sorted(os.listdir(tmp_path)) == (
        ["m.keras"] if command[0] == "export" else []
    )


def test_predict_reads_16_bit_grey_images_as_the_loader_does(tmp_path):
    # Pillow's convert clipped them: everything from 255 up was white.
    import tensorflow as tf
    from PIL import Image

    from seglayers.cli.predict import _read_image

    grey = np.random.default_rng(0).integers(0, 65536, (20, 30)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    by_loader = tf.io.decode_image(tf.io.read_file(str(tmp_path / "g.png")), 3)
    read = _read_image(str(tmp_path / "g.png"))
    assert read.dtype == np.uint8 and read.shape == (20, 30, 3)
    np.testing.assert_array_equal(read, by_loader.numpy())
    assert read.max() > 200 and read.min() < 50


@pytest.mark.parametrize(
    "case, message",
    [("missing", "No such image or folder"), ("broken", "Cannot read the image")],
)
def test_predict_bad_input_writes_nothing(
    trained_model, tmp_path, capsys, case, message
):
    model = trained_model
    path = tmp_path / "x.png"
    if case == "broken":
        path.write_bytes(b"not an image")
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(path), "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not out.exists()


def test_predict_never_replaces_a_folder(trained_model, tmp_path, capsys):
    # With --overwrite, the masks before it were replaced and then the move
    # failed: a run that failed had written some of its files.
    from PIL import Image

    model = trained_model
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(inputs / f"{name}.png")
    out = tmp_path / "out"
    (out / "b_mask.png").mkdir(parents=True)
    (out / "a_mask.png").write_bytes(b"earlier")
    command = ["predict", str(model), str(inputs), "--output", str(out), "--overwrite"]
    capsys.readouterr()
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"seglayers: error: {out / 'b_mask.png'} is a folder; move it, or choose "
        "another --output."
    ]
    assert (out / "a_mask.png").read_bytes() == b"earlier"


def test_predict_never_replaces_an_input(tmp_path, capsys):
    # A second run over a folder that holds the first one's masks, into that
    # folder: a_mask.png is an input and a target (it used to be replaced
    # with --overwrite).
    from PIL import Image

    _saved_unet(tmp_path / "m.keras")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "a_mask.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    before = (folder / "a_mask.png").read_bytes()
    command = ["predict", str(tmp_path / "m.keras"), str(folder)]
    assert cli.main([*command, "--output", str(folder), "--overwrite"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"seglayers: error: {folder}/a_mask.png is an input, and predicting would "
        "replace it; give an --output apart from the inputs."
    ]
    assert sorted(os.listdir(folder)) == ["a.png", "a_mask.png"]
    assert (folder / "a_mask.png").read_bytes() == before


# The console script that `pip install` wrote next to this Python.
SCRIPT = os.path.join(sysconfig.get_path("scripts"), "seglayers")


@pytest.mark.parametrize(
    "entry_point",
    [
        [sys.executable, "-m", "seglayers"],
        pytest.param(
            [SCRIPT],
            marks=pytest.mark.skipif(
                not os.path.isfile(SCRIPT), reason="seglayers is not pip-installed"
            ),
        ),
    ],
    ids=["python-m", "console-script"],
)
@pytest.mark.parametrize(
    "backend, message",
    [
        ("foo", "Unable to import backend : foo. Set KERAS_BACKEND to tensorflow"),
        (
            "torch",  # its package made unimportable below
            "Keras could not import its backend (No module named 'torch'). "
            "Install the backend's package, or set KERAS_BACKEND to tensorflow",
        ),
        ("numpy", "The numpy backend of Keras cannot train; set KERAS_BACKEND"),
    ],
)
def test_an_unusable_backend_is_one_line_and_exit_2(
    tmp_path, entry_point, backend, message
):
    # Keras fails on such a backend inside `import seglayers`, which both
    # entry points run before the command's own code.
    missing = tmp_path / "missing"
    (missing / "torch").mkdir(parents=True)
    (missing / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    path = [str(missing), PROJECT_ROOT, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path)
    run = tmp_path / "run"
    result = subprocess.run(
        [*entry_point, "train", *TINY, "--output", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("seglayers: error: "), error
    assert message in error[0]
    assert not run.exists()


def test_predict_tiles_images_larger_than_the_model_size(
    trained_model, tmp_path, monkeypatch
):
    from PIL import Image

    model = trained_model
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    calls = []
    real = seglayers.inference.prediction.predict_checked

    def spy(model, image, tile, smallest, overlap, *args):
        calls.append((image.shape, tile, overlap))
        return real(model, image, tile, smallest, overlap, *args)

    monkeypatch.setattr(seglayers.inference.prediction, "predict_checked", spy)
    command = ["predict", str(model), str(tmp_path / "big.png"), "--image-size"]
    command += ["32", "32", "--tile-overlap", "0.5"]
    assert cli.main(command + ["--output", str(tmp_path / "tiled")]) == 0
    assert calls == [((80, 100, 3), (32, 32), 0.5)]
    with Image.open(tmp_path / "tiled" / "big_mask.png") as mask:
        assert mask.size == (100, 80) and np.asarray(mask).max() < 4
    assert (
        cli.main(command + ["--no-tiling", "--output", str(tmp_path / "resized")]) == 0
    )
    assert len(calls) == 1  # resized to 32×32 instead
    assert cli.main(command[:-1] + ["1.5", "--output", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--ignore-class", "1"],
            "--ignore-class 1 is also a class id (0 to 3), so that class would "
            "never be learned or counted",
        ),
        (["--image-size", "0", "4"], "--image-size"),
        (["--num-classes", "0"], "--num-classes must be at least 1"),
    ],
)
def test_messages_name_the_flags(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, *args, "--output", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert "_class" not in error[0] and "image_size" not in error[0]
    assert not run.exists()


@pytest.mark.parametrize(
    "inner, shown",
    [
        (
            "\x1b[1mThe size is wrong. Received: depth=2\x1b[0m",
            "The size is wrong. Received: --depth 2",
        ),
        ("The size is wrong.", "The size is wrong."),
        ("\x1b[1mFirst line.\nSecond line.\x1b[0m", "First line."),
        ("\x1b[1m\x1b[0m", "Exception encountered when calling UNet.call()."),
    ],
)
def test_library_errors_unwrap_what_keras_wraps(inner, shown):
    # Keras 3's wrapper around an error raised in a layer's `call`.
    text = (
        f"Exception encountered when calling UNet.call().\n\n{inner}\n\n"
        "Arguments received by UNet.call():\n  • inputs=tf.Tensor(shape=(1, 2))"
    )
    assert str(cli._library_error(ValueError(text))) == shown
    assert str(cli._library_error(ValueError("Not wrapped."))) == "Not wrapped."


def test_library_errors_name_the_flags():
    error = cli._library_error(
        ValueError(
            "`ignore_class`=1 is also a class id (ids run over [0, 3) for "
            "num_classes=3). Received: ignore_class=1, num_classes=3"
        )
    )
    assert str(error) == (
        "--ignore-class 1 is also a class id (ids run over [0, 3) for "
        "--num-classes 3). Received: --ignore-class 1, --num-classes 3"
    )


def _modes(root):
    """Permission bits of every file and folder under `root`, itself included."""
    found = {".": os.stat(root).st_mode & 0o777}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = os.stat(path).st_mode & 0o777
    return found


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data loader")
def test_binary_folder_end_to_end_with_the_umask(tmp_path, capsys):
    from PIL import Image

    data = _folder(tmp_path / "data", max_id=2)  # ids 0 and 1
    run, report, out = tmp_path / "run", tmp_path / "eval.json", tmp_path / "out"
    binary = [*FOLDER_TRAIN, "--num-classes", "1"]  # the last flag wins
    old = os.umask(0o027)  # not the usual 0o022, nor what mkstemp gives (0o600)
    try:
        train = ["train", "--data", str(data), *binary, "--output", str(run)]
        assert cli.main(train) == 0
        printed = capsys.readouterr().out
        model = str(run / "model.keras")
        evaluate = ["evaluate", model, "--data", str(data), "--json", str(report)]
        assert cli.main(evaluate + ["--image-size", "32", "32"]) == 0
        images = str(data / "images")
        assert cli.main(["predict", model, images, "--output", str(out)]) == 0
    finally:
        os.umask(old)
    assert "Training UNet(num_classes=1" in printed
    assert [line.split()[0] for line in printed.splitlines()[-5:-2]] == [
        "0",
        "1",
        "mean",
    ]
    results = json.loads(report.read_text())
    assert {"iou/0", "iou/1", "dice/1", "mean_iou"} <= set(results)
    assert "iou/2" not in results
    with Image.open(out / "0_mask.png") as mask:
        assert set(np.unique(np.asarray(mask))) <= {0, 1}
    modes = _modes(run) | {"eval.json": _modes(report)["."]} | _modes(out)
    assert {name for name, mode in modes.items() if mode not in (0o640, 0o750)} == set()
    assert modes["."] == modes["previews"] == 0o750
    assert modes["previews/final.png"] == modes["0_mask.png"] == 0o640


def test_predict_output_that_is_a_file(tmp_path, capsys):
    model = tmp_path / "m.keras"  # never read: the output is checked first
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    image = tmp_path / "x.png"
    code = cli.main(["predict", str(model), str(image), "--output", str(taken)])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"seglayers: error: --output {taken} is a file; give a folder for the "
        "masks and overlays."
    ]
    assert taken.read_text() == "mine"


def test_predict_writes_16_bit_masks_for_more_than_255_classes(tmp_path):
    # The mask was cast to uint8: id 300 was written as 44.
    from PIL import Image

    keras.utils.set_random_seed(0)
    model = seglayers.UNet(300, filters=4, depth=2)
    model.build((None, None, None, 3))
    model.save(tmp_path / "m.keras")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    command = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png")]
    assert cli.main([*command, "--output", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "a_mask.png") as mask:
        assert mask.mode.startswith("I")  # 16-bit grey
        ids = np.asarray(mask)
    assert ids.shape == (32, 32) and 255 < ids.max() < 300


def _saved_unet(path):
    model = seglayers.UNet(3, filters=4, depth=2, rescale=1 / 255)
    model.build((None, None, None, 3))
    model.save(path)
    return model


@pytest.mark.slow  # an export each: 10-15 s on TensorFlow, ~1 min on JAX
@pytest.mark.parametrize(
    "format",
    [
        pytest.param(
            "savedmodel",
            marks=pytest.mark.skipif(
                keras.backend.backend() == "torch",
                reason="Keras 3.15.1 exports no SavedModel from PyTorch",
            ),
        ),
        pytest.param(
            "tflite",
            marks=pytest.mark.skipif(
                keras.backend.backend() != "tensorflow",
                reason="Keras exports LiteRT only on TensorFlow (and PyTorch)",
            ),
        ),
        pytest.param(
            "onnx",
            marks=pytest.mark.skipif(
                keras.backend.backend() != "tensorflow",
                reason="ONNX export on JAX needs jax2onnx, not in the extra",
            ),
        ),
    ],
)
def test_export_writes_a_model_for_any_size(tmp_path, capsys, format):
    from seglayers.inference.export import FORMATS, load_exported

    model = _saved_unet(tmp_path / "m.keras")
    out = tmp_path / f"exported.{format}"
    command = ["export", str(tmp_path / "m.keras"), str(out), "--format", format]
    assert cli.main(command) == 0
    assert f"Wrote {out} ({format}, input shape (None, None, None, 3))" in (
        capsys.readouterr().out
    )
    images = np.random.default_rng(0).uniform(0, 255, (1, 37, 53, 3))
    np.testing.assert_allclose(
        load_exported(str(out), FORMATS[format])(images),
        model.predict(images.astype("float32"), verbose=0),
        atol=1e-4,
    )
    # Nothing else left beside it (no staging folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.keras", out.name])


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-model", "No such model file"),
        ("out-exists", "exists; choose another OUT or pass --overwrite"),
        ("no-parent", "No such folder for OUT"),
    ],
)
def test_export_bad_path_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    model = tmp_path / "m.keras"
    if case != "missing-model":
        _saved_unet(model)
    out = tmp_path / "out"
    if case == "out-exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "no-parent":
        out = tmp_path / "nowhere" / "out"
    capsys.readouterr()
    assert cli.main(["export", str(model), str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    if case == "out-exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".seglayers")]


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras 3.15.1 exports no SavedModel from PyTorch",
)
def test_export_overwrite_replaces_out(tmp_path, capsys):
    _saved_unet(tmp_path / "m.keras")
    out = tmp_path / "out"
    (out / "variables").mkdir(parents=True)  # an earlier export
    (out / "saved_model.pb").write_text("old")
    (out / "variables" / "old.index").write_text("old")
    assert cli.main(["export", str(tmp_path / "m.keras"), str(out), "--overwrite"]) == 0
    assert (out / "saved_model.pb").read_bytes() != b"old"
    assert not (out / "variables" / "old.index").exists()


@pytest.mark.parametrize(
    "case, message",
    [
        (".", "OUT . is the current folder; "),
        ("m.keras", "OUT {tmp}/m.keras is MODEL {tmp}/m.keras; "),
        ("", "OUT {tmp} holds MODEL {tmp}/m.keras; "),
        (
            "mine",
            "OUT {tmp}/mine is a folder that holds no SavedModel (no "
            "saved_model.pb), so --overwrite does not replace it; choose another OUT.",
        ),
    ],
)
def test_export_overwrite_keeps_the_user_files(
    tmp_path, monkeypatch, capsys, case, message
):
    # `export m.keras . --overwrite` used to empty the current folder, the
    # model included; --overwrite replaces a file or an earlier export only.
    model = tmp_path / "m.keras"
    model.write_text("the model")  # never read: OUT is checked first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    if case == ".":
        monkeypatch.chdir(tmp_path)
    out = case if case == "." else str(tmp_path / case)
    assert cli.main(["export", str(model), out, "--overwrite"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    if case != "mine":
        message += "give the export a name of its own, e.g. unet_savedmodel."
    assert error == ["seglayers: error: " + message.format(tmp=tmp_path)]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "keep.txt",
        "m.keras",
        "mine",
    ]
    assert model.read_text() == "the model"


@pytest.mark.parametrize(
    "out, flags, format",
    [
        ("m.tflite", [], "tflite"),
        ("m.ONNX", [], "onnx"),
        ("m_savedmodel", [], "savedmodel"),
        ("m.onnx", ["--format", "onnx"], "onnx"),
        ("m", ["--format", "tflite"], "tflite"),
    ],
)
def test_export_format_follows_out(tmp_path, monkeypatch, capsys, out, flags, format):
    # Without --format, OUT's extension chooses it (m.tflite used to be a
    # SavedModel folder). Keras's export is replaced: only the choice is
    # tested here (the exports themselves: test_export_writes_a_model...).
    from seglayers.inference.export import FORMATS

    exported = []

    def export(self, filepath, format, verbose=None):
        exported.append(format)
        with open(filepath, "w") as f:
            f.write(format)

    monkeypatch.setattr(seglayers.SegmentationModel, "export", export)
    _saved_unet(tmp_path / "m.keras")
    capsys.readouterr()
    command = ["export", str(tmp_path / "m.keras"), str(tmp_path / out)]
    assert cli.main([*command, *flags]) == 0
    assert exported == [FORMATS[format]]
    assert (tmp_path / out).read_text() == FORMATS[format]
    assert f"Wrote {tmp_path / out} ({format}, " in capsys.readouterr().out


@pytest.mark.parametrize(
    "out, format, fitting",
    [("m.onnx", "tflite", "m.tflite"), ("x.tflite", "savedmodel", "x")],
)
def test_export_format_that_out_contradicts(tmp_path, capsys, out, format, fitting):
    # --format tflite used to write a TFLite file named m.onnx.
    out = tmp_path / out
    command = ["export", str(tmp_path / "m.keras"), str(out), "--format", format]
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()
    extension = out.suffix
    assert error == [
        f"seglayers: error: --format {format} does not match OUT {out}, whose "
        f"extension {extension} is --format {FORMAT_OF[extension]}; name OUT "
        f"{tmp_path / fitting}, or leave --format out."
    ]
    assert os.listdir(tmp_path) == []


FORMAT_OF = {".onnx": "onnx", ".tflite": "tflite"}


def test_export_bad_format_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "m.keras", str(tmp_path / "out"), "--format", "pt"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pt'" in capsys.readouterr().err


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="TFLite export works on TensorFlow"
)
def test_export_tflite_on_jax_is_one_line_and_exit_2(tmp_path, capsys):
    _saved_unet(tmp_path / "m.keras")
    out = tmp_path / "m.tflite"
    command = ["export", str(tmp_path / "m.keras"), str(out), "--format", "tflite"]
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "Cannot export as tflite" in error[0], error
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".seglayers")]


@keras.saving.register_keras_serializable(package="seglayers_tests")
class TwoLevelModel(seglayers.SegmentationModel):
    """A SegmentationModel that is not a UNet: the commands take any."""

    def __init__(self, num_classes, depth=2, **kwargs):
        super().__init__(num_classes, depth=depth, **kwargs)
        self.down = [
            keras.layers.Conv2D(4, 3, strides=2, padding="same") for _ in range(2)
        ]
        self.up = keras.layers.UpSampling2D(2)
        self.make_head()

    def encode(self, x, training=None):
        pyramid = {"P0": x}
        for level, conv in enumerate(self.down, start=1):
            pyramid[f"P{level}"] = x = conv(x)
        return pyramid

    def decode(self, pyramid, training=None):
        return self.up(self.up(pyramid["P2"]) + pyramid["P1"])


def test_commands_take_any_segmentation_model(tmp_path, capsys):
    from PIL import Image

    model = TwoLevelModel(3, rescale=1 / 255)
    model.build((None, None, None, 3))
    model.save(tmp_path / "m.keras")
    image = np.random.default_rng(0).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    out = tmp_path / "out"
    command = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png")]
    assert cli.main(command + ["--image-size", "32", "32", "--output", str(out)]) == 0
    with Image.open(out / "a_mask.png") as mask:
        assert mask.size == (24, 40) and np.asarray(mask).max() < 3


def test_predict_bad_image_size_is_one_line_and_exit_2(tmp_path, capsys):
    from PIL import Image

    _saved_unet(tmp_path / "m.keras")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    command = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png")]
    assert cli.main(command + ["--image-size", "0", "4", "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--image-size must be the size the model" in error[0]
    assert "image_size" not in error[0] and not out.exists()
