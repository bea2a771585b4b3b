"""The public API is declared once, named as DESIGN.md says, and loadable."""

import importlib
import re

import keras
import pytest

import seglayers


def _snake_case(name):
    """`MeanIoU` -> `mean_iou`: capitalised acronyms count as one word."""
    name = name.replace("IoU", "Iou").replace("UNet", "Unet")
    name = name.replace("DeepLab", "Deeplab")  # one word, as in the paper
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def test_all_lists_every_public_name():
    assert sorted(seglayers.__all__) == sorted(set(seglayers.__all__))
    for name in seglayers.__all__:
        assert hasattr(seglayers, name), name


def test_each_public_class_lives_in_the_module_named_after_it():
    for name in seglayers.__all__:
        obj = getattr(seglayers, name)
        if not isinstance(obj, type):
            continue
        module = obj.__module__
        assert module.startswith("seglayers."), module
        assert module.rsplit(".", 1)[1] == _snake_case(name), (name, module)
        assert getattr(importlib.import_module(module), name) is obj


def test_every_keras_class_is_registered_under_seglayers():
    kinds = (keras.layers.Layer, keras.metrics.Metric, keras.losses.Loss)
    for name in seglayers.__all__:
        obj = getattr(seglayers, name)
        if isinstance(obj, type) and issubclass(obj, kinds):
            assert keras.saving.get_registered_name(obj) == f"seglayers>{name}"
            assert keras.saving.get_registered_object(f"seglayers>{name}") is obj


def test_library_code_uses_no_private_keras_and_no_tensorflow():
    import pathlib

    root = pathlib.Path(seglayers.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "keras.src" not in text, path
        relative = path.relative_to(root).as_posix()
        # TensorFlow belongs to the data pipeline, the command line and the
        # tf.distribute fixes (DESIGN.md).
        if relative.startswith(("data/", "cli/", "distribute/multi_worker.py")):
            continue
        if relative == "inference/export.py":
            # Export may use TensorFlow (TFLite constants, SavedModel loading),
            # imported inside the functions that need it, never at the top.
            assert not re.search(r"^(import|from) tensorflow", text, re.M), path
            continue
        assert not re.search(r"^\s*(import|from) tensorflow", text, re.M), path
        assert "Lambda(" not in text, path


def test_callbacks_are_not_registered_as_serializable():
    # A callback holds data and paths and is never saved with a model.
    assert keras.saving.get_registered_object("seglayers>MaskVisualizer") is None


def test_the_old_strategy_path_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match=r"moved to `seglayers.distribute"):
        from seglayers.data import MultiWorkerMirroredStrategy
    new_place = seglayers.distribute.MultiWorkerMirroredStrategy
    assert MultiWorkerMirroredStrategy is new_place
