import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from seglayers import cli
from tests.harness import PROJECT_ROOT

# A tiny model on 32×32 images, quietly.
SMALL = ["--image-size", "32", "32", "--filters", "4", "--depth", "2", "--verbose", "0"]
TINY = ["--num-samples", "24", "--epochs", "2", "--batch-size", "8", *SMALL]


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
        (["--num-classes", "7"], "`num_classes` must be 2, 3 or 4"),
        (["--depth", "6"], "halves the input 6 times"),
        (["--num-samples", "2"], "leaves an empty training or validation set"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, *args, "--output", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("seglayers: error: ")
    assert message in error[0]
    assert not run.exists()


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
        ("ids-too-large", "class ids [3, 4] outside [0, 3)"),
        ("no-num-classes", "--data needs --num-classes"),
        ("broken-image", "Cannot read the image"),
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
    assert not (tmp_path / "run").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".seglayers")]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "No such model file"),
        ("corrupt", "is not a readable .keras model"),
        ("not-seglayers", "holds a Sequential, not a seglayers UNet"),
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


def _trained_model(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--output", str(run)]) == 0
    return run / "model.keras"


def test_predict_writes_masks_at_the_original_size(tmp_path, capsys):
    from PIL import Image

    model = _trained_model(tmp_path)
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
    "case, message",
    [("missing", "No such image or folder"), ("broken", "Cannot read the image")],
)
def test_predict_bad_input_writes_nothing(tmp_path, capsys, case, message):
    model = _trained_model(tmp_path)
    path = tmp_path / "x.png"
    if case == "broken":
        path.write_bytes(b"not an image")
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(path), "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "backend, message",
    [
        ("foo", "Unable to import backend : foo. Set KERAS_BACKEND to tensorflow"),
        ("numpy", "The numpy backend of Keras cannot train; set KERAS_BACKEND"),
    ],
)
def test_an_unusable_backend_is_one_line_and_exit_2(tmp_path, backend, message):
    # The console script's module: it runs before `import seglayers`, which is
    # where Keras fails on an unknown backend.
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = PROJECT_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "_seglayers_launcher",
            "train",
            *TINY,
            "--output",
            str(run),
        ],
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


def test_predict_tiles_images_larger_than_the_model_size(tmp_path, monkeypatch):
    from PIL import Image

    import seglayers

    model = _trained_model(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    calls = []
    real = seglayers.predict_tiled

    def spy(model, image, tile_size, **kwargs):
        calls.append((image.shape, tile_size, kwargs["overlap"]))
        return real(model, image, tile_size, **kwargs)

    monkeypatch.setattr(seglayers, "predict_tiled", spy)
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
