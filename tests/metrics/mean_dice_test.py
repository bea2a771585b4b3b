import numpy as np
import pytest

from seglayers import MeanDice
from tests.harness import _check_config
from tests.metrics.helpers import numpy_confusion, numpy_scores, random_segmentation


@pytest.mark.parametrize("ignore_class", [None, 255])
def test_matches_numpy(ignore_class):
    y_true, logits = random_segmentation(1, ignore_class=ignore_class, absent=0)
    metric = MeanDice(5, ignore_class=ignore_class, class_names=list("abcde"))
    metric.update_state(y_true, logits)
    result = metric.result()
    _, dice = numpy_scores(numpy_confusion(y_true, logits.argmax(-1), 5, ignore_class))
    assert float(result["mean_dice"]) == pytest.approx(np.nanmean(dice), abs=1e-6)
    np.testing.assert_allclose(
        [float(result[f"dice/{c}"]) for c in "abcde"], dice, atol=1e-6
    )


def test_config():
    _check_config(MeanDice, {"num_classes": 2, "ignore_class": 9})
