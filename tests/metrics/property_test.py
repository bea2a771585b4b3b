"""Property tests: any masks, any split into batches, the same counts."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from seglayers import MeanIoU
from tests.harness import TRACED_STEP
from tests.metrics.helpers import numpy_confusion, traced_update


@TRACED_STEP
@settings(max_examples=25, deadline=None)
@given(
    num_classes=st.integers(1, 6),
    batches=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    with_ignore=st.booleans(),
)
def test_confusion_matrix_equals_numpy_for_any_masks(
    num_classes, batches, seed, with_ignore
):
    size = max(num_classes, 2)
    rng = np.random.default_rng(seed)
    # Ids from -1 to size + 1: out-of-range values on both sides, plus 255.
    y_true = rng.integers(-1, size + 2, size=(batches, 2, 5, 3))
    y_pred = rng.integers(0, size, size=(batches, 2, 5, 3))
    if with_ignore:
        y_true[rng.uniform(size=y_true.shape) < 0.2] = 255
    ignore_class = 255 if with_ignore else None
    metric = MeanIoU(num_classes, ignore_class=ignore_class, y_pred_format="ids")
    # Traced, as in `fit`: eagerly, out-of-range ids raise.
    traced_update(metric, y_true, y_pred)
    expected = numpy_confusion(y_true, y_pred, size, ignore_class)
    actual = keras.ops.convert_to_numpy(metric.confusion_matrix())
    np.testing.assert_array_equal(actual, expected)
    in_range = (y_true >= 0) & (y_true < size)
    out_of_range = ~in_range & (y_true != 255) if with_ignore else ~in_range
    assert metric.out_of_range_count == int(out_of_range.sum())
