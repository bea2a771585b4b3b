"""Which architecture to pick: the models of `seglayers train --model NAME`.

    python -m benchmarks.architectures                      # ~1 hour on 2 cores
    python -m benchmarks.architectures --quick              # tiny budget, a smoke run
    python -m benchmarks.architectures --lock /tmp/bench.lock --backends tensorflow

For UNet, UNetPlusPlus, FPN and DeepLabV3Plus exactly as `seglayers train
--model NAME` builds them with no other flags (the command's own parser and
model arguments: UNet and UNet++ over their own encoder, filters 16 and
depth 3; FPN, with the command's depth 3, and DeepLabV3+ over a randomly
initialised resnet50):

1. the parameters;
2. one training step (`train_on_batch`, compiled as the command compiles:
   Adam, `DiceCrossEntropyLoss`, `MeanIoU`, `PixelAccuracy`) on a batch of
   the command's shapes data at its image size and batch size, per backend,
   in a fresh process; warm-up excluded, the four models interleaved
   repeat by repeat, best of the repeats, each against UNet's;
3. `python -m seglayers train --model NAME` itself (TensorFlow, the
   command's default backend), in a subprocess, into a temporary run folder:
   the validation mean IoU of its final model (`metrics.json`, what the
   command prints), the `fit` seconds it records, and the wall time of the
   whole command (start-up, data, `fit`, saving and the evaluation).

`--lock FILE` takes an exclusive `flock` on FILE around each timed part
(the step timings of one backend, and each training run) and releases it
between them, so a machine shared with other benchmarks runs them one at a
time without one long hold.

Not part of `python -m benchmarks`: the four default training runs take
about an hour on 2 cores (UNet's `fit` about 5 minutes, DeepLabV3+'s, at
five times UNet's step time, about 25), and that runner should stay near 10. The
step rows are in the benchmarks' format (unit ms; the ratio is UNet's time
over the model's, > 1: faster than UNet); the Markdown table after them is
the README's "Which to pick".
"""

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile

from benchmarks.__main__ import format_table, run_one
from benchmarks.harness import row, summarize

ARCHITECTURES = ("unet", "unetplusplus", "fpn", "deeplabv3plus")
BACKENDS = ("tensorflow", "jax")
# --quick: a training budget that only shows the pipeline works end to end.
QUICK_FLAGS = ("--num-samples", "40", "--epochs", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command_args(model, quick):
    """The arguments of `seglayers train --model MODEL`, its defaults filled
    in by the command's own checks."""
    from seglayers.cli import _parser
    from seglayers.cli.train import _check_train_args

    args = _parser().parse_args(
        ["train", "--model", model, *(QUICK_FLAGS if quick else ())]
    )
    _check_train_args(args)
    return args


def _compiled_model(args):
    """`(model, (images, masks))`: the command's model, compiled as
    `seglayers train` compiles it, and one batch of its data."""
    import keras

    import seglayers
    from seglayers.cli._fit import compile_model
    from seglayers.cli.train import _load_data, _model_arguments

    (images, masks), _, class_names = _load_data(args)
    name, kwargs = _model_arguments(args)
    keras.utils.set_random_seed(args.seed)
    model = getattr(seglayers, name)(**kwargs)
    compile_model(model, args, class_names)
    batch = args.batch_size
    return model, (images[:batch], masks[:batch])


def _time_interleaved(fns, repeats, warmup):
    """Summaries of seconds per call, one per callable, timed in turn."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [summarize(t) for t in times]


def run(backend, quick=False):
    """Step-time rows of each model against UNet, on `backend`."""
    from seglayers.cli.train import MODELS

    steps, names = [], []
    for model_name in ARCHITECTURES:
        args = _command_args(model_name, quick)
        model, (images, masks) = _compiled_model(args)
        steps.append(lambda m=model, x=images, y=masks: m.train_on_batch(x, y))
        names.append(MODELS[model_name][0])
    summaries = _time_interleaved(
        steps, repeats=3 if quick else 10, warmup=1 if quick else 2
    )
    size = "x".join(str(s) for s in args.size)
    return [
        row(
            "which to pick",
            backend,
            f"{name} train step vs UNet, {size}, batch {args.batch_size} "
            "(seglayers train defaults)",
            summary,
            summaries[0],
            "ms",
            per_call=1000.0,
            higher=False,
        )
        for name, summary in zip(names, summaries)
    ]


@contextlib.contextmanager
def _held(lock_path):
    """An exclusive `flock` on `lock_path` (the one `flock(1)` takes), or
    nothing when it is None."""
    if lock_path is None:
        yield
        return
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def train_run(model, quick, folder):
    """Runs `python -m seglayers train --model MODEL` (TensorFlow) into
    `folder`; returns what it printed and recorded."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "seglayers", "train", "--model", model]
    command += [*(QUICK_FLAGS if quick else ()), "--output", folder, "--verbose", "2"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise RuntimeError(f"seglayers train --model {model} failed")
    # "Training UNet(num_classes=4, filters=16, depth=3): 484,196 parameters, ..."
    built = re.search(r"Training (\w+\(.*?\)): ([\d,]+) parameters", result.stdout)
    with open(os.path.join(folder, "metrics.json")) as f:
        metrics = json.load(f)
    return {
        "model": model,
        "built": built.group(1),
        "encoder": _saved_encoder(os.path.join(folder, "model.keras")),
        "parameters": int(built.group(2).replace(",", "")),
        "mean_iou": metrics["mean_iou"],
        "fit_seconds": metrics["training_seconds"],
        "wall_seconds": round(wall, 1),
    }


def _saved_encoder(path):
    """The `encoder` argument saved in a `.keras` file: the command prints
    only the arguments it sets, and FPN and DeepLabV3+ default to resnet50."""
    with zipfile.ZipFile(path) as archive:
        encoder = json.loads(archive.read("config.json"))["config"]["encoder"]
    if encoder is None:
        return "its own"
    # A saved encoder is its feature model, named "<encoder>_pyramid".
    return encoder["config"]["name"].removesuffix("_pyramid")


def markdown(trained, step_rows):
    """The README's table: one line per model."""
    unet_ms = {r["backend"]: r["baseline"] for r in step_rows}
    steps = {}
    for r in step_rows:
        steps.setdefault(r["what"].split()[0], []).append(r)
    backends = sorted(unet_ms, key=BACKENDS.index)
    lines = [
        "| model (as `seglayers train` builds it) | encoder | parameters | "
        + " | ".join(f"step time vs UNet ({b})" for b in backends)
        + " | validation mean IoU | `fit` / wall time |",
        "| --- | --- | ---: | " + "---: | " * len(backends) + "---: | ---: |",
    ]
    for t in trained:
        name = t["built"].split("(")[0]
        times = {r["backend"]: r["ours"] for r in steps.get(name, [])}
        cells = [
            f"{times[b] / unet_ms[b]:.2f}× ({times[b]:.0f} ms)" if b in times else "–"
            for b in backends
        ]
        lines.append(
            f"| `{t['built']}` | {t['encoder']} | {t['parameters']:,} | "
            + " | ".join(cells)
            + f" | {t['mean_iou']:.3f} | {t['fit_seconds']:.0f} s / "
            f"{t['wall_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.architectures")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", nargs="*", choices=BACKENDS, default=BACKENDS)
    parser.add_argument(
        "--models", nargs="*", choices=ARCHITECTURES, default=ARCHITECTURES
    )
    parser.add_argument("--lock", metavar="FILE", help="flock FILE around timed parts")
    parser.add_argument("--json", metavar="FILE", help="also write the results")
    args = parser.parse_args(argv)
    step_rows = []
    for backend in args.backends:
        print(f"timing train steps on {backend} ...", file=sys.stderr, flush=True)
        with _held(args.lock):
            rows = run_one("architectures", backend, args.quick)
        # Progress, and what a run stopped half-way still leaves.
        print(format_table(rows), file=sys.stderr, flush=True)
        step_rows.extend(rows)
    trained = []
    with tempfile.TemporaryDirectory() as runs:
        for model in args.models:
            print(f"seglayers train --model {model} ...", file=sys.stderr, flush=True)
            with _held(args.lock):
                trained.append(train_run(model, args.quick, os.path.join(runs, model)))
            print(f"  {json.dumps(trained[-1])}", file=sys.stderr, flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    print(f"Machine: {machine}, {time.strftime('%Y-%m-%d')}\n")
    print(format_table(step_rows) + "\n")
    print(markdown(trained, step_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": step_rows, "trained": trained}, f)


if __name__ == "__main__":
    main()
