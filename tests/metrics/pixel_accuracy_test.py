import numpy as np
import pytest

from seglayers import PixelAccuracy
from tests.harness import _check_config
from tests.metrics.helpers import random_segmentation


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_matches_numpy(ignore_class):
    y_true, logits = random_segmentation(2, ignore_class=ignore_class)
    metric = PixelAccuracy(5, ignore_class=ignore_class)
    metric.update_state(y_true[..., None], logits)
    labelled = y_true != 255
    expected = (logits.argmax(-1) == y_true)[labelled].mean()
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_nan_before_any_labelled_pixel():
    metric = PixelAccuracy(3, ignore_class=255)
    metric.update_state(np.full((4,), 255), np.zeros((4,), "int32"))
    assert np.isnan(float(metric.result()))


def test_config():
    _check_config(PixelAccuracy, {"num_classes": 3, "threshold": 0.2})
