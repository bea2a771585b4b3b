import numpy as np
import pytest

from seglayers import IoU
from tests.harness import _check_config
from tests.metrics.helpers import numpy_confusion, numpy_scores, random_segmentation


def test_per_class_values_match_numpy():
    y_true, logits = random_segmentation(0, ignore_class=255, absent=3)
    metric = IoU(5, ignore_class=255, class_names=list("abcde"))
    metric.update_state(y_true, logits)
    result = metric.result()
    iou, _ = numpy_scores(numpy_confusion(y_true, logits.argmax(-1), 5, 255))
    assert list(result) == [f"iou/{c}" for c in "abcde"]
    np.testing.assert_allclose([float(v) for v in result.values()], iou, atol=1e-6)
    assert np.isnan(float(result["iou/d"]))


def test_default_keys_are_class_ids():
    metric = IoU(2, name="val")
    metric.update_state(np.array([0, 1]), np.array([0, 1]))
    assert sorted(metric.result()) == ["val/0", "val/1"]


def test_config():
    _check_config(IoU, {"num_classes": 3, "class_names": ["x", "y", "z"]})


def test_bad_class_names():
    with pytest.raises(ValueError, match=r"`class_names` needs one name per class"):
        IoU(3, class_names=["x"])
