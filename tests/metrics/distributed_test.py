"""Metric state is counts only, so replicas sum to the single-device values."""

import json

import keras
import pytest

from tests.harness import run_in_fresh_process

_SCRIPT = """
import json
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import numpy as np
import seglayers
from tests.metrics.helpers import random_segmentation

y_true, logits = random_segmentation(0, batch=8, size=16, ignore_class=255)
y_true = y_true[..., None]


def evaluate(strategy):
    with strategy.scope():
        model = keras.Sequential([keras.Input((16, 16, 5)), keras.layers.Identity()])
        model.compile(
            loss=seglayers.DiceCrossEntropyLoss(from_logits=True, ignore_class=255),
            metrics=[
                seglayers.MeanIoU(5, ignore_class=255, class_names=list("abcde")),
                seglayers.MeanDice(5, ignore_class=255),
                seglayers.MeanDice(
                    5, ignore_class=255, per_sample=True, name="dice_per_sample"
                ),
                seglayers.PixelAccuracy(5, ignore_class=255),
            ],
        )
    return model.evaluate(logits, y_true, batch_size=4, return_dict=True, verbose=0)


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
# Each replica gets half of each batch of 4: the loss is the mean of the
# per-replica batch losses.
loss = seglayers.DiceCrossEntropyLoss(from_logits=True, ignore_class=255)
halves = [float(loss(y_true[i : i + 2], logits[i : i + 2])) for i in range(0, 8, 2)]
print(json.dumps({"one": evaluate(tf.distribute.OneDeviceStrategy("/cpu:0")),
                  "two": evaluate(mirrored), "halves": sum(halves) / 4}))
"""


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow"
)
def test_mirrored_strategy_gives_the_single_device_values():
    stdout = run_in_fresh_process(_SCRIPT, [], backend="tensorflow")
    result = json.loads(stdout.strip().splitlines()[-1])
    one, two = result["one"], result["two"]
    for key in ("mean_iou", "iou/a", "iou/e", "mean_dice", "pixel_accuracy"):
        assert two[key] == one[key], key
    # Per sample: float32 sums of Dice values, added in another order.
    assert two["dice_per_sample"] == pytest.approx(one["dice_per_sample"], rel=1e-6)
    # Not doubled by Keras's unscaling of 0-d losses (see SegmentationLoss.call).
    assert two["loss"] == pytest.approx(result["halves"], rel=1e-5)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-2)
