"""Training-step time against segmentation_models.pytorch (smp) on CPU.

    python -m benchmarks.pytorch_peers --torch-python /tmp/smpvenv/bin/python
    python -m benchmarks.pytorch_peers --torch-python ... --quick   # smoke run

One optimizer step (Adam, cross-entropy on logits, a batch of 4 images of
128x128x3 and their masks, 4 classes; --quick: 2 of 64x64) of each seglayers
model against smp's same model, both over a randomly initialised ResNet50:

- `UNet` / `UNetPlusPlus` (`encoder="resnet50"`, decoder channels 256, 128,
  64, 32, 16, `upsampling="nearest"` as smp's decoders) against
  `smp.Unet` / `smp.UnetPlusPlus`;
- `FPN` against `smp.FPN` (both defaults: 256 pyramid and 128 segmentation
  channels);
- `DeepLabV3Plus` against `smp.DeepLabV3Plus`, output stride 16 both. Not the
  same work: smp dilates the ResNet50's last stage to keep stride 16, where
  seglayers leaves that stage out (see `DeepLabV3Plus`'s docstring).

seglayers models output logits (`output_activation=None`) and get their
inputs as given (`encoder_preprocessing=None`), as smp's do. seglayers steps
are `train_on_batch` (what `fit` runs per batch) on the TensorFlow and the
JAX backend, each in a fresh process, with each backend's default settings.
PyTorch runs eagerly in smp's Python (`--torch-python`, or the
`SEGLAYERS_SMP_PYTHON` variable), `torch.set_num_threads` set to the
machine's cores, as a worker process that builds one model at a time and
times one step per request: so the repeats alternate, seglayers, PyTorch,
seglayers, ..., while the other side waits idle. Each side is timed in its
own process; the warm-up steps are excluded, the value is the best repeat.

On a machine shared with other work, set `OMP_WAIT_POLICY=PASSIVE` (the
worker inherits it): PyTorch's OpenMP threads spin-wait at each barrier, and
with a core taken by another process a 2-thread step here took 5 to 30
times as long as with passive waiting (README, "Training step against
segmentation_models.pytorch").

Rows are in the benchmarks' format (unit ms; the ratio is PyTorch's time
over seglayers', > 1: seglayers faster), and trainable parameters of the
whole models (batch normalization's running statistics left out on both
sides) are printed next to them. Not part of `python -m benchmarks`: it
needs smp's Python.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from benchmarks.harness import row, summarize
from benchmarks.smp_parameters import (
    SMP_IMPORT,
    SMP_PYTHON_VARIABLE,
    check_smp_python,
)

CLASSES = 4
# seglayers model, its arguments, smp's class, its arguments, the setting.
COMPARISONS = [
    (
        "UNet",
        {"encoder": "resnet50", "upsampling": "nearest"},
        "Unet",
        {},
        "upsampling='nearest' as smp",
    ),
    (
        "UNetPlusPlus",
        {"encoder": "resnet50", "upsampling": "nearest"},
        "UnetPlusPlus",
        {},
        "upsampling='nearest' as smp",
    ),
    ("FPN", {"encoder": "resnet50"}, "FPN", {}, "defaults"),
    (
        "DeepLabV3Plus",
        {"encoder": "resnet50", "output_stride": 16},
        "DeepLabV3Plus",
        {"encoder_output_stride": 16},
        "output stride 16",
    ),
]

# smp's Python runs this: a worker that reads one request per line from
# stdin ("build NAME KWARGS-JSON", "step", "quit") and answers each.
_TORCH_WORKER = (
    SMP_IMPORT
    + """
import json, os, time
import torch

torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
classes, batch, size = (int(v) for v in sys.argv[1:4])
images = torch.rand(batch, 3, size, size)
masks = torch.randint(0, classes, (batch, size, size))
print("READY " + json.dumps({"torch": torch.__version__, "smp": smp.__version__,
      "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    request, _, rest = line.strip().partition(" ")
    if request == "build":
        name, kwargs = rest.split(" ", 1)
        model = getattr(smp, name)("resnet50", encoder_weights=None,
                                   classes=classes, **json.loads(kwargs))
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
)


class TorchWorker:
    """smp's Python as a subprocess that builds one model and times steps."""

    def __init__(self, torch_python, batch, size):
        check_smp_python(torch_python, "benchmarks.pytorch_peers", "--torch-python")
        self.process = subprocess.Popen(
            [
                torch_python,
                "-W",
                "ignore",
                "-c",
                _TORCH_WORKER,
                str(CLASSES),
                str(batch),
                str(size),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.versions = self._answer("READY")

    def _answer(self, tag):
        line = self.process.stdout.readline()
        if not line.startswith(tag + " "):
            self.process.kill()
            raise RuntimeError(
                f"the PyTorch worker failed (expected {tag}, got {line!r}); "
                "its traceback is above"
            )
        return json.loads(line[len(tag) + 1 :])

    def _ask(self, request, tag):
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self._answer(tag)

    def build(self, name, kwargs):
        """Builds smp's `name`; returns its trainable parameters."""
        return self._ask(f"build {name} {json.dumps(kwargs)}", "BUILT")["parameters"]

    def step(self):
        """One optimizer step; returns its seconds, as the worker timed it."""
        return self._ask("step", "TIME")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def seglayers_model(name, kwargs, batch, size):
    """`(step, trainable parameters)` of seglayers' `name`, compiled as smp's
    model is trained: Adam, cross-entropy on logits."""
    import keras
    import numpy as np

    import seglayers

    keras.utils.set_random_seed(0)
    model = getattr(seglayers, name)(
        CLASSES, output_activation=None, encoder_preprocessing=None, **kwargs
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.build((None, size, size, 3))
    rng = np.random.default_rng(0)
    # Tensors already, as PyTorch's: no conversion in the timed step.
    images = keras.ops.convert_to_tensor(
        rng.uniform(size=(batch, size, size, 3)).astype("float32")
    )
    masks = keras.ops.convert_to_tensor(
        rng.integers(0, CLASSES, size=(batch, size, size, 1)).astype("int32")
    )
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return (lambda: model.train_on_batch(images, masks)), count


def _time_against(ours, theirs, repeats, warmup):
    """Summaries of seconds per step, seglayers and PyTorch in turn."""
    for _ in range(warmup):
        ours()
        theirs()
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
        theirs_times.append(theirs())
    return summarize(ours_times), summarize(theirs_times)


def step_row(question, backend, what, times, counts, worker, library):
    """A training-step row (ms, lower is better) with both parameter counts
    and the PyTorch worker's threads and versions (`library`: "smp" or
    "monai", a key of `worker.versions`)."""
    result = row(question, backend, what, *times, "ms", per_call=1000.0, higher=False)
    result.update(
        seglayers_parameters=counts[0],
        torch_parameters=counts[1],
        torch_threads=worker.versions["threads"],
        versions=f"torch {worker.versions['torch']}, {library} "
        f"{worker.versions[library]}",
    )
    return result


def run(backend, quick=False, torch_python=None):
    """Rows of each model against smp's on `backend` (the benchmark module
    interface; smp's Python from `torch_python` or $SEGLAYERS_SMP_PYTHON)."""
    batch, size = (2, 64) if quick else (4, 128)
    worker = TorchWorker(
        torch_python or os.environ.get(SMP_PYTHON_VARIABLE), batch, size
    )
    rows = []
    try:
        for name, kwargs, smp_name, smp_kwargs, setting in COMPARISONS:
            ours, ours_count = seglayers_model(name, kwargs, batch, size)
            theirs_count = worker.build(smp_name, smp_kwargs)
            times = _time_against(
                ours, worker.step, repeats=2 if quick else 4, warmup=2
            )
            rows.append(
                step_row(
                    "train step vs PyTorch (CPU)",
                    backend,
                    f"{name} ({setting}) vs smp.{smp_name}, resnet50, {size}², "
                    f"batch {batch}, Adam",
                    times,
                    (ours_count, theirs_count),
                    worker,
                    "smp",
                )
            )
    finally:
        worker.close()
    return rows


def parameters_markdown(rows):
    """Whole-model trainable parameters, seglayers and smp side by side."""
    lines = [
        "| seglayers | smp | seglayers parameters | smp parameters | difference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    seen = set()
    for r in rows:
        ours, theirs = r["what"].split(" vs ")
        if ours in seen:
            continue
        seen.add(ours)
        lines.append(
            f"| `{ours}` | `{theirs.split(',')[0]}` | {r['seglayers_parameters']:,} | "
            f"{r['torch_parameters']:,} | "
            f"{r['seglayers_parameters'] - r['torch_parameters']:+,} |"
        )
    return "\n".join(lines)


def main(argv=None):
    from benchmarks.__main__ import BACKENDS, format_table, run_one

    parser = argparse.ArgumentParser(prog="python -m benchmarks.pytorch_peers")
    parser.add_argument(
        "--torch-python",
        default=os.environ.get(SMP_PYTHON_VARIABLE),
        help=f"a Python with torch and smp (default: ${SMP_PYTHON_VARIABLE})",
    )
    parser.add_argument("--backends", nargs="*", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the rows")
    args = parser.parse_args(argv)
    check_smp_python(args.torch_python, "benchmarks.pytorch_peers", "--torch-python")
    # `run_one` starts each backend's process with this environment.
    os.environ[SMP_PYTHON_VARIABLE] = args.torch_python
    rows = []
    for backend in args.backends:
        print(f"running pytorch_peers on {backend} ...", file=sys.stderr, flush=True)
        rows.extend(run_one("pytorch_peers", backend, args.quick))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    print(
        f"Machine: {machine}, {time.strftime('%Y-%m-%d')}; {rows[0]['versions']}, "
        f"{rows[0]['torch_threads']} PyTorch threads\n"
    )
    print(format_table(rows) + "\n")
    print(parameters_markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
