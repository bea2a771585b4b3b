import json
import os

import keras
import numpy as np
import pytest

from seglayers import cli

TINY = [
    "--num-samples",
    "24",
    "--image-size",
    "32",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--filters",
    "4",
    "--depth",
    "2",
    "--verbose",
    "0",
]


def test_train_writes_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--output", str(run)]) == 0
    assert sorted(os.listdir(run)) == [
        "best.keras",
        "history.csv",
        "metrics.json",
        "model.keras",
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
