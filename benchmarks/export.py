"""Serving an exported model: each format's own runtime against Keras.

A `UNet(2, filters=16, depth=4)` exported at any size
(`model.export(path, format=...)`) and run by the runtime a deployment uses:
the SavedModel's `serve` endpoint (`tf.saved_model.load`), the LiteRT
interpreter (`ai-edge-litert`) and ONNX Runtime, against
`model.predict_on_batch` in the same process, on one 256×256 image (128²
with --quick) on the CPU. TensorFlow backend only: Keras exports TFLite and
ONNX from TensorFlow (ONNX from JAX needs jax2onnx).
"""

import os
import tempfile

from benchmarks.harness import row, time_pair


def run(backend, quick=False):
    if backend != "tensorflow":
        return []
    import keras
    import numpy as np

    import seglayers
    from seglayers.inference.export import load_exported

    size = 128 if quick else 256
    keras.utils.set_random_seed(0)
    model = seglayers.UNet(2, filters=16, depth=4)
    model.build((None, None, None, 3))
    image = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3))
    image = image.astype("float32")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, format, suffix in [
            ("SavedModel serve", "tf_saved_model", ""),
            ("TFLite (LiteRT interpreter)", "litert", ".tflite"),
            ("ONNX Runtime", "onnx", ".onnx"),
        ]:
            path = os.path.join(folder, "model" + suffix)
            model.export(path, format=format, verbose=False)
            serve = load_exported(path, format)
            ours, baseline = time_pair(
                lambda serve=serve: serve(image),
                lambda: model.predict_on_batch(image),
                repeats=3 if quick else 10,
            )
            rows.append(
                row(
                    "export serving (CPU)",
                    backend,
                    f"UNet(2, filters=16, depth=4), 1×{size}² image: {name} vs "
                    "model.predict_on_batch",
                    ours,
                    baseline,
                    "ms",
                    per_call=1000,
                    higher=False,
                )
            )
    return rows
