"""Two workers on 127.0.0.1 train one UNet with MultiWorkerMirroredStrategy.

Each worker is its own process with its own `TF_CONFIG`, reads its shard of
the shapes data set through `tf.data`, and trains a few steps; both must end
with identical weights, and only the chief writes the model and previews.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.harness import PROJECT_ROOT

_WORKER = """
import json, os, sys
index, ports, output = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
    "task": {"type": "worker", "index": index},
})
import numpy as np
import tensorflow as tf
import keras
import seglayers
from seglayers.distribute import MultiWorkerMirroredStrategy
from seglayers.datasets import shapes

strategy = MultiWorkerMirroredStrategy()
assert strategy.num_replicas_in_sync == 2
keras.utils.set_random_seed(0)  # the same initial weights on both workers
images, masks = shapes.load_data(32, (32, 32), seed=0)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = (
    tf.data.experimental.AutoShardPolicy.DATA
)
data = (
    tf.data.Dataset.from_tensor_slices((images, masks))
    .batch(8)  # the global batch: 4 per worker
    .with_options(options)
)
with strategy.scope():
    model = seglayers.UNet(4, filters=4, depth=2, rescale=1 / 255)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=seglayers.DiceCrossEntropyLoss(),
        metrics=[seglayers.MeanIoU(4)],
    )
worker_dir = os.path.join(output, f"worker_{index}")
visualizer = seglayers.MaskVisualizer(
    (images[:2], masks[:2]), output_dir=os.path.join(worker_dir, "previews")
)
history = model.fit(data, epochs=2, verbose=0, callbacks=[visualizer])
logs = model.evaluate(data, verbose=0, return_dict=True)
np.savez(
    os.path.join(output, f"weights_{index}.npz"),
    *[keras.ops.convert_to_numpy(w) for w in model.weights],
)
if index == 0:  # the chief
    model.save(os.path.join(worker_dir, "model.keras"))
print(json.dumps({"loss": history.history["loss"], "mean_iou": logs["mean_iou"]}))
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(script, *args, timeout=240):
    """Runs `script` as workers 0 and 1 of one job on free loopback ports;
    returns `[(returncode, stdout, stderr)]`. Both are killed at the end."""
    ports = ",".join(str(p) for p in _free_ports(2))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = PROJECT_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), ports, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        results = [worker.communicate(timeout=timeout) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    return [(w.returncode, out, err) for w, (out, err) in zip(workers, results)]


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow"
)
def test_two_workers_on_loopback(tmp_path):
    runs = run_two_workers(_WORKER, str(tmp_path))
    for returncode, _, stderr in runs:
        assert returncode == 0, stderr[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in runs]
    # The same loss and metric on both: logs are reduced across workers.
    assert reports[0] == reports[1]
    assert all(np.isfinite(reports[0]["loss"]))
    weights = [np.load(tmp_path / f"weights_{i}.npz") for i in range(2)]
    assert len(weights[0].files) > 10
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    assert sorted(os.listdir(tmp_path / "worker_0")) == ["model.keras", "previews"]
    assert sorted(os.listdir(tmp_path / "worker_0" / "previews")) == [
        "epoch_001.png",
        "epoch_002.png",
        "final.png",
    ]
    assert not (tmp_path / "worker_1").exists()  # no previews, no model
