"""Files saved by every seglayers release load with the same predictions.

`tests/fixtures/<release>/` holds `.keras` files written by that release
(`tests/fixtures/make_fixtures.py`), with their inputs, predictions and
`evaluate` results. A development version's folder (`v0.2.0.dev0`) pins
what main saved before a release: the models added since 0.1.0. Each file
must load under `safe_mode=True` after `import seglayers`, on every
backend, predict the same and evaluate to the same numbers with its saved
losses and metrics. A failure here means a change broke users' saved
models: keep registered names and make new constructor arguments default
to the old behaviour.
"""

import json
import os

import keras
import numpy as np
import pytest

from seglayers._masks import model_threshold

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
RELEASES = sorted(  # folders with a manifest (not __pycache__ and the like)
    name
    for name in os.listdir(FIXTURES)
    if os.path.isfile(os.path.join(FIXTURES, name, "manifest.json"))
)


def _models(release):
    with open(os.path.join(FIXTURES, release, "manifest.json")) as f:
        return json.load(f)["models"]


CASES = [(release, name) for release in RELEASES for name in _models(release)]


def test_every_release_has_fixtures():
    assert {"v0.1.0", "v0.2.0.dev0"} <= set(RELEASES)
    assert len(_models("v0.1.0")) == 8
    assert len(_models("v0.2.0.dev0")) == 19


@pytest.mark.parametrize("release, name", CASES)
def test_saved_file_loads_with_the_same_predictions(release, name):
    path = os.path.join(FIXTURES, release, name)
    data = np.load(path + ".npz")
    model = keras.saving.load_model(path + ".keras", safe_mode=True)
    # Saved on TensorFlow; other backends agree to float32 round-off.
    predictions = model.predict(data["x"], verbose=0)
    np.testing.assert_allclose(predictions, data["predictions"], atol=1e-4)
    if "metric_names" not in data:
        return  # a preprocessing model, not compiled
    _assert_same_classes_but_at_near_ties(model, predictions, data["predictions"])
    expected = dict(zip(data["metric_names"].tolist(), data["metric_values"]))
    # The saved losses and metrics, on the saved predictions: exactly the
    # saved numbers (a change in what a saved metric or loss computes).
    stand_in = keras.Sequential(
        [keras.Input(data["predictions"].shape[1:]), keras.layers.Identity()]
    )
    stand_in.compile_from_config(model.get_compile_config())
    values = stand_in.evaluate(
        data["predictions"], data["y"], batch_size=4, verbose=0, return_dict=True
    )
    assert sorted(values) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(
            values[key], value, rtol=1e-5, atol=1e-6, err_msg=key
        )
    # The loaded model itself: its loss as tightly; its metrics count
    # arg-max pixels, and one at a near-tie (above) moves them by ~1e-3.
    values = model.evaluate(
        data["x"], data["y"], batch_size=4, verbose=0, return_dict=True
    )
    assert sorted(values) == sorted(expected)
    for key, value in expected.items():
        atol = 1e-5 if "loss" in key else 2e-3
        np.testing.assert_allclose(
            values[key], value, rtol=1e-4, atol=atol, err_msg=key
        )


def _assert_same_classes_but_at_near_ties(model, predictions, saved):
    """Every pixel's class (arg-max, or one sigmoid channel against the
    model's threshold) is the saved one, but where the saved scores were
    within 1e-3 of a tie, which another CPU or backend may round the other
    way."""
    if saved.shape[-1] == 1:
        threshold = model_threshold(model)
        classes, saved_classes = predictions > threshold, saved > threshold
        tie = np.abs(saved - threshold) < 1e-3
    else:
        classes, saved_classes = predictions.argmax(-1), saved.argmax(-1)
        top_two = np.sort(saved, axis=-1)[..., -2:]
        tie = top_two[..., 1] - top_two[..., 0] < 1e-3
    flipped = classes != saved_classes
    assert not (flipped & ~tie).any(), f"{flipped.sum()} pixels changed class"
