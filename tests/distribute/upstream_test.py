"""The upstream bugs `seglayers.distribute` works around, on plain Keras.

Each test does what a user would do with Keras and TensorFlow alone and
asserts the behaviour that should be; each is a strict expected failure, so
it fails (XPASS) the day Keras or TensorFlow fixes the bug, and the
workaround can go. Keras 3.15.1, TensorFlow 2.21.
"""

import json
import subprocess

import keras
import pytest

from tests.distribute.multi_worker_test import run_two_workers
from tests.harness import run_in_fresh_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow"
    ),
]

_BATCH_NORMALIZATION = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import seglayers

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# The two halves of the batch differ, so the replicas' batch statistics do.
x = np.concatenate([np.zeros((4, 3)), np.ones((4, 3))]).astype("float32")
spread = {}
for name, layer_class in [
    ("keras", keras.layers.BatchNormalization),
    ("seglayers", seglayers.distribute.BatchNormalization),
]:
    with strategy.scope():
        layer = layer_class()
        model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    model.fit(x, np.zeros((8, 1)), batch_size=8, epochs=2, shuffle=False, verbose=0)
    means = strategy.experimental_local_results(layer.moving_mean.value)
    spread[name] = float(np.abs(np.asarray(means[0]) - np.asarray(means[1])).max())
print(json.dumps(spread))
"""


@pytest.fixture(scope="module")
def moving_mean_spread():
    """How far the two replicas' moving means end apart, per layer class."""
    stdout = run_in_fresh_process(_BATCH_NORMALIZATION, [], backend="tensorflow")
    return json.loads(stdout.strip().splitlines()[-1])


def test_seglayers_batch_normalization_keeps_replicas_equal(moving_mean_spread):
    assert moving_mean_spread["seglayers"] == 0.0


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="Keras 3.15 creates moving statistics with aggregation='none': "
    "each replica keeps its own (seglayers.distribute.BatchNormalization)",
)
def test_plain_keras_batch_normalization_keeps_replicas_equal(moving_mean_spread):
    assert moving_mean_spread["keras"] == 0.0


_PLAIN_WORKER = """
import json, os, sys
index, ports = int(sys.argv[1]), sys.argv[2].split(",")
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
    "task": {"type": "worker", "index": index},
})
import numpy as np
import tensorflow as tf
import keras

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
data = tf.data.Dataset.from_tensor_slices(
    (np.ones((8, 4), "float32"), np.ones((8, 1), "float32"))
).batch(4)
model.fit(data, epochs=1, verbose=0)
model.evaluate(data, verbose=0)
"""


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="Keras 3.15 calls strategy.reduce with a tuple of PerReplica values "
    "and reduces scalar logs along axis 0 (seglayers.distribute."
    "MultiWorkerMirroredStrategy)",
)
def test_plain_tensorflow_multi_worker_strategy_fits():
    try:
        runs = run_two_workers(_PLAIN_WORKER, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the two plain workers hung")  # neither fixed nor failing
    for returncode, _, stderr in runs:
        assert returncode == 0, stderr[-2000:]
