import keras
import numpy as np
import pytest

import seglayers
from seglayers import PerClassIoU
from tests.harness import _check_config
from tests.metrics.helpers import numpy_confusion, numpy_scores, random_segmentation


def test_per_class_values_match_numpy():
    y_true, logits = random_segmentation(0, ignore_class=255, absent=3)
    metric = PerClassIoU(5, ignore_class=255, class_names=list("abcde"))
    metric.update_state(y_true, logits)
    result = metric.result()
    iou, _ = numpy_scores(numpy_confusion(y_true, logits.argmax(-1), 5, 255))
    assert list(result) == [f"iou/{c}" for c in "abcde"]
    np.testing.assert_allclose([float(v) for v in result.values()], iou, atol=1e-6)
    assert np.isnan(float(result["iou/d"]))


def test_default_keys_are_class_ids():
    metric = PerClassIoU(2, name="val")
    metric.update_state(np.array([0, 1]), np.array([0, 1]))
    assert sorted(metric.result()) == ["val/0", "val/1"]


def test_config():
    _check_config(PerClassIoU, {"num_classes": 3, "class_names": ["x", "y", "z"]})


def test_bad_class_names():
    with pytest.raises(ValueError, match=r"`class_names` needs one name per class"):
        PerClassIoU(3, class_names=["x"])


def test_the_old_name_still_loads_and_warns_when_used():
    assert keras.saving.get_registered_name(PerClassIoU) == "seglayers>PerClassIoU"
    config = keras.saving.serialize_keras_object(PerClassIoU(3))
    config["registered_name"] = "seglayers>IoU"  # as 0.1 saved it
    config["class_name"] = "IoU"
    revived = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(revived) is PerClassIoU
    with pytest.warns(DeprecationWarning, match=r"now `seglayers.PerClassIoU`"):
        assert seglayers.IoU is PerClassIoU
    with pytest.warns(DeprecationWarning, match=r"`seglayers.metrics.IoU` is now"):
        from seglayers.metrics import IoU
    assert IoU is PerClassIoU
