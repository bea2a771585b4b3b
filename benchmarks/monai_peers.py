"""U-Nets against MONAI on PyTorch CPU: training steps and sliding windows.

    python -m benchmarks.monai_peers --torch-python /tmp/smpvenv/bin/python
    python -m benchmarks.monai_peers --torch-python ... --quick   # smoke run
    python -m benchmarks.monai_peers --torch-python ... --parts 3d --backends jax

Three parts, seglayers on the TensorFlow and the JAX backend (each in a fresh
process), MONAI in a Python with PyTorch and MONAI (`--torch-python`, or the
`SEGLAYERS_SMP_PYTHON` variable; `pip install monai` in smp's environment):

- `2d`: one optimizer step (Adam, cross-entropy on logits) of
  `UNet(4, filters=16, depth=4)` on a batch of 4 images of 128×128×3 (--quick:
  2 of 64²) against MONAI's `BasicUNet` (the same network: two 3×3
  convolutions per level, 2× max pooling, 2×2 transposed convolutions,
  concatenated skips; set to batch norm and ReLU, no conv bias, as seglayers')
  and MONAI's `UNet` (another network: one stride-2 convolution per level
  instead of convolutions + pooling, 3×3 transposed convolutions, with
  `num_res_units=2` a residual unit of two convolutions down and one up;
  instance norm and PReLU unless set).
- `3d`: the same on one volume of 48³×1 (--quick: 32³), 2 classes,
  `UNet(..., spatial_dims=3)` with instance normalization (MONAI's default;
  seglayers' 3-D default is group normalization, instance normalization in
  levels of up to 32 channels) and with batch norm, against the matching
  MONAI networks.
- `sliding`: `predict_tiled` against MONAI's `sliding_window_inference` on
  one 96³×1 volume (--quick: 64³), 48³ patches (--quick: 32³), overlap
  0.25, Gaussian blending (σ = patch / 8 on both sides), 4 patches per
  call, with the batch-norm 3-D U-Net and the matching `BasicUNet`, in
  inference mode. Each side runs in a fresh process: the time of a call
  (the first, which traces or warms up, excluded) and the process's peak
  resident memory (Linux `VmHWM`), as `benchmarks.tiled_prediction`.

Training steps are timed as in `benchmarks.pytorch_peers`: seglayers'
`train_on_batch` and one PyTorch step (in a worker process,
`torch.set_num_threads` set to the machine's cores) in turn, warm-up
excluded, the best repeat. Ratios: PyTorch's over seglayers', > 1:
seglayers better. Trainable parameters (batch norm's running statistics left
out on both sides) are printed side by side. Not part of
`python -m benchmarks`: it needs a PyTorch environment.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

from benchmarks.harness import peak_memory_mb, row, summarize
from benchmarks.pytorch_peers import TorchWorker, _time_against, step_row
from benchmarks.smp_parameters import SMP_PYTHON_VARIABLE

PARTS = ("2d", "3d", "sliding")
PARTS_VARIABLE = "SEGLAYERS_MONAI_PARTS"
FEATURES = (16, 32, 64, 128, 256)
# MONAI's BasicUNet set to seglayers' UNet(filters=16, depth=4) defaults:
# batch norm, ReLU, no conv bias before a normalization.
BASIC_BATCH = {
    "features": FEATURES + (16,),
    "act": "relu",
    "norm": "batch",
    "bias": False,
}
BASIC_INSTANCE = dict(BASIC_BATCH, norm=["instance", {"affine": True}])
MONAI_UNET = {"channels": FEATURES, "strides": (2, 2, 2, 2)}
# Per part: the input (spatial dims, channels, classes, batch, size; quick
# size) and the comparisons (seglayers' UNet arguments, its label, MONAI's
# network, its arguments, its label).
TRAINING = {
    "2d": (
        (2, 3, 4, 4, 128, 64),
        [
            (
                {"normalization": "batch"},
                "batch norm",
                "BasicUNet",
                BASIC_BATCH,
                "batch norm, ReLU",
            ),
            (
                {"normalization": "batch"},
                "batch norm",
                "UNet",
                dict(MONAI_UNET, num_res_units=2, norm="batch"),
                "num_res_units=2, batch norm",
            ),
            (
                {"normalization": "batch"},
                "batch norm",
                "UNet",
                dict(MONAI_UNET, num_res_units=0),
                "num_res_units=0, defaults",
            ),
        ],
    ),
    "3d": (
        (3, 1, 2, 1, 48, 32),
        [
            (
                {"normalization": "instance"},
                "instance norm",
                "BasicUNet",
                BASIC_INSTANCE,
                "instance norm, ReLU",
            ),
            (
                {"normalization": "batch"},
                "batch norm",
                "BasicUNet",
                BASIC_BATCH,
                "batch norm, ReLU",
            ),
            (
                {"normalization": "batch"},
                "batch norm",
                "UNet",
                dict(MONAI_UNET, num_res_units=2, norm="batch"),
                "num_res_units=2, batch norm",
            ),
        ],
    ),
}

# The torch Python runs this: `benchmarks.pytorch_peers`' worker protocol
# ("build NAME KWARGS-JSON", "step", "quit"), MONAI's networks.
_MONAI_WORKER = """
import json, os, sys, time
import torch, monai
from monai.networks import nets

torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
spatial_dims, channels, classes, batch, size = (int(v) for v in sys.argv[1:6])
images = torch.rand(batch, channels, *(size,) * spatial_dims)
masks = torch.randint(0, classes, (batch,) + (size,) * spatial_dims)
print("READY " + json.dumps({"torch": torch.__version__, "monai": monai.__version__,
      "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    request, _, rest = line.strip().partition(" ")
    if request == "build":
        name, kwargs = rest.split(" ", 1)
        model = getattr(nets, name)(spatial_dims=spatial_dims, in_channels=channels,
                                    out_channels=classes, **json.loads(kwargs))
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        count = sum(p.numel() for p in model.parameters())
        print("BUILT " + json.dumps({"parameters": count}), flush=True)
    elif request == "step":
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        loss.backward()
        optimizer.step()
        print("TIME " + repr(time.perf_counter() - start), flush=True)
    else:
        break
"""


def check_torch_python(torch_python):
    if not torch_python:
        raise SystemExit(
            "benchmarks.monai_peers needs a Python with PyTorch and MONAI: pass "
            f"--torch-python PATH or set {SMP_PYTHON_VARIABLE}. To make one: "
            "python -m venv /tmp/smpvenv && /tmp/smpvenv/bin/pip install "
            "torch==2.13.0 monai"
        )


class MonaiWorker(TorchWorker):
    """`TorchWorker`'s protocol, answered by MONAI's networks."""

    def __init__(self, torch_python, shape):
        check_torch_python(torch_python)
        self.process = subprocess.Popen(
            [torch_python, "-W", "ignore", "-c", _MONAI_WORKER, *map(str, shape)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.versions = self._answer("READY")


def seglayers_step(kwargs, spatial_dims, channels, classes, batch, size):
    """`(step, trainable parameters)` of `UNet(classes, filters=16, depth=4,
    **kwargs)`, trained as MONAI's: Adam, cross-entropy on logits."""
    import keras
    import numpy as np

    import seglayers

    keras.utils.set_random_seed(0)
    model = seglayers.UNet(
        classes,
        filters=16,
        depth=4,
        spatial_dims=spatial_dims,
        output_activation=None,
        **kwargs,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    shape = (batch,) + (size,) * spatial_dims
    model.build(shape + (channels,))
    rng = np.random.default_rng(0)
    # Tensors already, as PyTorch's: no conversion in the timed step.
    images = keras.ops.convert_to_tensor(
        rng.uniform(size=shape + (channels,)).astype("float32")
    )
    masks = keras.ops.convert_to_tensor(
        rng.integers(0, classes, size=shape + (1,)).astype("int32")
    )
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return (lambda: model.train_on_batch(images, masks)), count


def training_rows(part, backend, quick, torch_python):
    (dims, channels, classes, batch, size, quick_size), comparisons = TRAINING[part]
    size = quick_size if quick else size
    shape = (dims, channels, classes, batch, size)
    worker = MonaiWorker(torch_python, shape)
    rows = []
    try:
        for kwargs, label, name, monai_kwargs, monai_label in comparisons:
            ours, ours_count = seglayers_step(kwargs, *shape)
            theirs_count = worker.build(name, monai_kwargs)
            # 3-D steps take seconds: fewer repeats keep a part in minutes.
            repeats, warmup = (5, 2) if dims == 2 else (3, 1)
            times = _time_against(
                ours, worker.step, repeats=2 if quick else repeats, warmup=warmup
            )
            rows.append(
                step_row(
                    f"{part} train step vs MONAI (CPU)",
                    backend,
                    f"UNet(filters=16, depth=4, {label}) vs monai {name}"
                    f"({monai_label}), {'×'.join([str(size)] * dims)}×{channels}, "
                    f"batch {batch}, Adam",
                    times,
                    (ours_count, theirs_count),
                    worker,
                    "monai",
                )
            )
    finally:
        worker.close()
    return rows


_SEGLAYERS_SETUP = """
import time
import numpy as np
import keras
import seglayers
keras.utils.set_random_seed(0)
model = seglayers.UNet(2, filters=16, depth=4, spatial_dims=3,
                       normalization="batch", output_activation=None)
model.build((None, None, None, None, 1))
volume = np.random.default_rng(0).uniform(size=({size},) * 3 + (1,)).astype("float32")
def infer(volume=volume):
    seglayers.predict_tiled(model, volume, {patch}, overlap=0.25, batch_size=4,
                            blend="gaussian", verbose=0)
patch = volume[:{patch}, :{patch}, :{patch}]
"""

_MONAI_SETUP = """
import os, time
import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import BasicUNet
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
model = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2,
                  **{basic}).eval()
volume = torch.from_numpy(np.random.default_rng(0).uniform(
    size=(1, 1) + ({size},) * 3).astype("float32"))
def infer(volume=volume):
    with torch.inference_mode():
        sliding_window_inference(volume, ({patch},) * 3, 4, model, overlap=0.25,
                                 mode="gaussian")
patch = volume[..., :{patch}, :{patch}, :{patch}]
"""

# An untimed call on one patch (one full batch of 4 patches: what traces
# the model, or makes oneDNN's primitives), then the best of `repeats`.
_INFER = """
infer(patch)
times = []
for _ in range({repeats}):
    start = time.perf_counter()
    infer()
    times.append(time.perf_counter() - start)
print("SECONDS", min(times))
"""


@contextlib.contextmanager
def _python(executable):
    """`peak_memory_mb` starts `sys.executable`: for a while, another one."""
    saved, sys.executable = sys.executable, executable
    try:
        yield
    finally:
        sys.executable = saved


def sliding_rows(backend, quick, torch_python):
    check_torch_python(torch_python)
    size, patch = (64, 32) if quick else (96, 48)
    # One timed call: 27 patches of 48³ take minutes with XLA's 3-D convolutions.
    work = _INFER.format(repeats=1)
    ours = peak_memory_mb(
        _SEGLAYERS_SETUP.format(size=size, patch=patch), work, backend
    )
    with _python(torch_python):
        theirs = peak_memory_mb(
            _MONAI_SETUP.format(size=size, patch=patch, basic=BASIC_BATCH),
            work,
            backend,
        )
    what = (
        f"UNet(2, filters=16, depth=4, spatial_dims=3, batch norm) vs monai "
        f"BasicUNet(batch norm, ReLU), {size}³ volume, {patch}³ patches, overlap "
        "0.25, gaussian, 4 per call"
    )
    measures = [
        ("time, predict_tiled vs sliding_window_inference", "seconds", "s"),
        ("process peak RSS", "peak_mb", "MB"),
        ("peak RSS rise during inference", "mb", "MB"),
    ]
    return [
        row(
            "sliding window vs MONAI (CPU)",
            backend,
            f"{what}: {label}",
            summarize([ours[key]]),
            summarize([theirs[key]]),
            unit,
            higher=False,
        )
        for label, key, unit in measures
    ]


def run(backend, quick=False, torch_python=None, parts=None):
    """Rows of the `parts` (default: $SEGLAYERS_MONAI_PARTS, else all) on
    `backend` (the benchmark module interface)."""
    torch_python = torch_python or os.environ.get(SMP_PYTHON_VARIABLE)
    parts = parts or os.environ.get(PARTS_VARIABLE, ",".join(PARTS)).split(",")
    rows = []
    for part in parts:
        if part == "sliding":
            rows.extend(sliding_rows(backend, quick, torch_python))
        else:
            rows.extend(training_rows(part, backend, quick, torch_python))
    return rows


def parameters_markdown(rows):
    """Whole-model trainable parameters, seglayers and MONAI side by side."""
    lines = [
        "| seglayers | MONAI | seglayers parameters | MONAI parameters | difference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    seen = set()
    for r in rows:
        if "seglayers_parameters" not in r:
            continue
        ours, theirs = r["what"].split(" vs ")
        theirs, setting = theirs.split("), ", 1)
        key = (ours, theirs, setting)
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            f"| `{ours}`, {setting.split(', batch')[0]} | `{theirs})` | "
            f"{r['seglayers_parameters']:,} | {r['torch_parameters']:,} | "
            f"{r['seglayers_parameters'] - r['torch_parameters']:+,} |"
        )
    return "\n".join(lines)


def main(argv=None):
    from benchmarks.__main__ import BACKENDS, format_table, run_one

    parser = argparse.ArgumentParser(prog="python -m benchmarks.monai_peers")
    parser.add_argument(
        "--torch-python",
        default=os.environ.get(SMP_PYTHON_VARIABLE),
        help=f"a Python with torch and monai (default: ${SMP_PYTHON_VARIABLE})",
    )
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS))
    parser.add_argument("--backends", nargs="*", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the rows")
    args = parser.parse_args(argv)
    check_torch_python(args.torch_python)
    # `run_one` starts each backend's process with this environment.
    os.environ[SMP_PYTHON_VARIABLE] = args.torch_python
    os.environ[PARTS_VARIABLE] = ",".join(args.parts)
    rows = []
    for backend in args.backends:
        print(f"running monai_peers on {backend} ...", file=sys.stderr, flush=True)
        rows.extend(run_one("monai_peers", backend, args.quick))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    versions = next((r["versions"] for r in rows if "versions" in r), "")
    print(f"Machine: {machine}, {time.strftime('%Y-%m-%d')}; {versions}\n")
    print(format_table(rows) + "\n")
    print(parameters_markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
