"""GPU training throughput: UNet on JAX against a PyTorch U-Net, in one call.

    python -m benchmarks.gpu      # on the GPU machine: README, "GPU (one call)"
    python -m benchmarks.gpu --quick --torch-python /tmp/smpvenv/bin/python

The paper's network, `UNet(num_classes=21, filters=64, depth=4,
normalization=None, output_activation=None)`, 256², batch 32,
`mixed_bfloat16`, JAX backend, trained by one jitted step built from Keras's
stateless API: forward, `DiceCrossEntropyLoss(from_logits=True)`, Adam, and
`MeanIoU.stateless_update_state`. The batch is put on the device once, as the
reference keeps its batch on the GPU: no host-to-device copy per step.
`--loop fit` measures `model.fit` from host numpy arrays instead (what a user
writes; the bench README's functional Keras U-Net was measured that way).

The reference is `torch_unet_reference.py` from the bench helpers beside the
project (`../shared/bench/`; the same U-Net in plain PyTorch, channels_last,
bf16, eager and `torch.compile`), run in the same call, in its own process,
with the same batch, size, warm-up and steps, and its JSON line parsed.

Images/s are the best of `--repeats` windows of `--steps` steps (warm-up and
compilation excluded, the harness's rule); the reference times one window.
TFLOP/s count FLOPs analytically as the reference does (3 × the forward
convolutions, 2 per multiply-add), so both sides' TFLOP/s compare directly;
XLA's cost analysis of the lowered step (which also counts the loss, the
metric and Adam, and leaves out the unneeded gradient of the input) is
reported beside it.

Each seglayers run is a fresh process (XLA reads its flags once), and
`--also "ARGS"` adds runs whose arguments override the base run's, so one GPU
call can try variants without edits:

    --also "--metric none" --also "--loop fit" --also "--batch-size 64"

The JSON (`--json`; by default `$OUT/gpu_results.json` when `OUT` is set,
else benchmarks/gpu_results.json) is rewritten after every run, so a call
stopped at its time limit keeps what finished.
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

from benchmarks.__main__ import format_table
from benchmarks.harness import row, summarize, time_call

CLASSES, DEPTH, CHANNELS = 21, 4, 3
TARGET = 1.1  # issue 17: at least 1.1x PyTorch compiled
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = "torch_unet_reference.py"
# Where the reference is looked for, in order: a checkout with shared/
# inside it, the copy carried beside the wheels to the GPU machine (the
# `../shared` beside a checkout does not travel there), the bench folder.
REFERENCE_PLACES = ("shared/bench", ".whl", "../shared/bench")
# Small enough for two niced CPU cores; every code path still runs.
QUICK = {
    "size": 32,
    "batch_size": 2,
    "filters": 8,
    "steps": 2,
    "repeats": 2,
    "warmup": 1,
}
LOOPS = {"step": "jitted step, data on device", "fit": "fit from host arrays"}
# The knobs of one seglayers run, forwarded to its process.
KNOBS = (
    "size",
    "batch_size",
    "filters",
    "steps",
    "repeats",
    "warmup",
    "loop",
    "loss",
    "metric",
    "policy",
    "remat",
    "xla_flags",
    "allow_cpu",
)

# Runs the reference in the PyTorch interpreter. Without CUDA (the CPU dry
# run) it maps the reference's CUDA calls onto the CPU, in float32 and with
# torch.compile's "eager" backend: CPU bf16 and inductor's C++ build take
# minutes on two cores and say nothing about the GPU; the point there is that
# the reference runs with these arguments and its output parses.
_TORCH_CHILD = """
import json, runpy, sys, torch
print("TORCH " + json.dumps({"version": torch.__version__,
                             "cuda": torch.cuda.is_available()}), flush=True)
if not torch.cuda.is_available():
    import contextlib
    def on_cpu(make):
        def made(*args, **kwargs):
            if kwargs.get("device") == "cuda":
                kwargs["device"] = "cpu"
            return make(*args, **kwargs)
        return made
    torch.randn, torch.randint = on_cpu(torch.randn), on_cpu(torch.randint)
    torch.nn.Module.cuda = lambda self, device=None: self
    torch.autocast = lambda *args, **kwargs: contextlib.nullcontext()
    compile_ = torch.compile
    torch.compile = lambda model, **kwargs: compile_(model, backend="eager")
    torch.cuda.synchronize = lambda *args: None
    torch.cuda.reset_peak_memory_stats = lambda *args: None
    torch.cuda.max_memory_allocated = lambda *args: 0
    torch.cuda.get_device_name = lambda *args: "cpu (dry run)"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def unet_train_flops(size, filters, depth=DEPTH, classes=CLASSES):
    """FLOPs of one training step per image: 3 × forward, 2 per multiply-add.

    Counts the convolutions of the paper's U-Net (same padding, 2×2 stride-2
    transposed convolutions: one tap per output pixel), as the reference does.
    """
    macs, cin, side = 0, CHANNELS, size
    for level in range(depth + 1):  # the contracting path, then the bottom
        width = filters * 2**level
        macs += side * side * 9 * (cin * width + width * width)
        cin, side = width, side // 2
    side *= 2
    for level in reversed(range(depth)):
        width, side = filters * 2**level, side * 2
        macs += side * side * cin * width  # transposed convolution
        macs += side * side * 9 * (2 * width * width + width * width)
        cin = width
    macs += side * side * cin * classes
    return 3 * 2 * macs


def _block_tensorflow():
    """Makes `import tensorflow` fail, as on the GPU machine, which has none."""
    import importlib.abc

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ImportError("no TensorFlow on the GPU machine")

    sys.meta_path.insert(0, NoTensorFlow())


def _cost_flops(lowered):
    """XLA's FLOP count of a lowered step, or None where JAX gives none."""
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - a missing figure, not a failed run
        return None
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and cost.get("flops") else None


def _make_step(model, loss_fn, optimizer, metric):
    """One jitted train step over `(trainable, non_trainable, optimizer, metric)`."""
    import jax

    def loss_and_outputs(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(
            trainable, non_trainable, x, training=True
        )
        return loss_fn(y, logits), (logits, non_trainable)

    gradients = jax.value_and_grad(loss_and_outputs, has_aux=True)

    def step(state, x, y):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        (loss, (logits, non_trainable)), grads = gradients(
            trainable, non_trainable, x, y
        )
        trainable, optimizer_vars = optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        if metric is not None:
            metric_vars = metric.stateless_update_state(metric_vars, y, logits)
        return loss, (trainable, non_trainable, optimizer_vars, metric_vars)

    # Donating the state lets XLA update it in place, as Keras's own trainer.
    return jax.jit(step, donate_argnums=0)


def _train_on_device(knobs, model, loss_fn, metric, images, masks, result):
    import jax
    import keras
    import numpy as np

    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    state = tuple(
        [v.value for v in variables]
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            optimizer.variables,
            metric.variables if metric is not None else [],
        )
    )
    x, y = jax.device_put(images), jax.device_put(masks)  # once, not per step
    step = _make_step(model, loss_fn, optimizer, metric)
    start = time.perf_counter()
    lowered = step.lower(state, x, y)
    result["flops_per_step_xla"] = _cost_flops(lowered)
    compiled = lowered.compile()
    result["compile_s"] = time.perf_counter() - start
    box = {"state": state}

    def run_window(steps):
        for _ in range(steps):
            box["loss"], box["state"] = compiled(box["state"], x, y)
        jax.block_until_ready(box["state"])

    run_window(knobs.warmup)
    window = time_call(lambda: run_window(knobs.steps), knobs.repeats, warmup=0)
    result["loss"] = float(box["loss"])
    if metric is not None:
        # The pattern of Keras's JAX training-loop guide: write the state
        # back, then read the metric the usual way.
        for variable, value in zip(metric.variables, box["state"][3]):
            variable.assign(value)
        steps_run = knobs.warmup + knobs.repeats * knobs.steps
        result["metric_pixels"] = int(np.sum(np.asarray(metric.confusion_matrix())))
        result["metric_pixels_expected"] = steps_run * masks.size
    return window


def _train_with_fit(knobs, model, loss_fn, metric, images, masks, result):
    import keras
    import numpy as np

    model.compile(
        keras.optimizers.Adam(1e-3),
        loss_fn,
        metrics=[metric] if metric is not None else None,
    )
    # Host numpy arrays of `steps` batches: `fit` copies each to the device.
    xs, ys = (np.tile(a, (knobs.steps, 1, 1, 1)) for a in (images, masks))
    history = {}

    def run_window():
        history.update(
            model.fit(
                xs, ys, batch_size=knobs.batch_size, epochs=1, shuffle=False, verbose=0
            ).history
        )

    start = time.perf_counter()
    run_window()  # warm-up: compiles the step
    result["compile_s"] = time.perf_counter() - start
    window = time_call(run_window, knobs.repeats, warmup=0)
    result["loss"] = history["loss"][-1]
    return window


def measure(knobs):
    """One seglayers run, in its own process: returns its result dict."""
    if knobs.xla_flags:  # read once, when JAX starts its backend
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {knobs.xla_flags}"
    _block_tensorflow()
    import contextlib

    import jax
    import keras
    import numpy as np

    import seglayers

    device = jax.devices()[0]
    if keras.backend.backend() != "jax":
        raise RuntimeError("run with KERAS_BACKEND=jax")
    if device.platform == "cpu" and not knobs.allow_cpu:
        raise RuntimeError("JAX sees no GPU here; `--quick` is the CPU dry run")
    keras.mixed_precision.set_global_policy(knobs.policy)
    remat = (
        contextlib.nullcontext()
        if knobs.remat == "none"
        else keras.RematScope(mode=knobs.remat)
    )
    with remat:  # Keras fixes a layer's remat mode when the layer is made
        model = seglayers.UNet(
            CLASSES,
            filters=knobs.filters,
            depth=DEPTH,
            normalization=None,
            output_activation=None,
        )
        model.build((None, knobs.size, knobs.size, CHANNELS))
    losses = {
        "dice_ce": lambda: seglayers.DiceCrossEntropyLoss(from_logits=True),
        "dice": lambda: seglayers.DiceLoss(from_logits=True),
        "focal": lambda: seglayers.FocalLoss(from_logits=True),
        "crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(
            from_logits=True
        ),
    }
    metric = seglayers.MeanIoU(CLASSES) if knobs.metric == "mean_iou" else None
    rng = np.random.default_rng(0)
    shape = (knobs.batch_size, knobs.size, knobs.size)
    images = rng.standard_normal((*shape, CHANNELS), dtype="float32")  # as PyTorch's
    masks = rng.integers(0, CLASSES, (*shape, 1)).astype("int32")
    result = {
        "device": device.device_kind,
        "platform": device.platform,
        "jax": jax.__version__,
        "keras": keras.__version__,
        "params": model.count_params(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    train = _train_on_device if knobs.loop == "step" else _train_with_fit
    # Seconds per window of `steps` steps: median, min, max over `repeats`.
    window = train(knobs, model, losses[knobs.loss](), metric, images, masks, result)
    if metric is not None:
        result["mean_iou"] = float(metric.result())
    per_image = unet_train_flops(knobs.size, knobs.filters)
    images_per_window = knobs.batch_size * knobs.steps
    seconds = {
        key: value / images_per_window if key != "repeats" else value
        for key, value in window.items()
    }
    result.update(
        compute_dtype=model.compute_dtype,
        seconds_per_image=seconds,
        images_per_s=1 / seconds["min"],
        images_per_s_median=1 / seconds["median"],
        flops_per_image_analytic=per_image,
    )
    result["tflops"] = result["images_per_s"] * per_image / 1e12
    if result.get("flops_per_step_xla"):
        result["tflops_xla"] = (
            result["images_per_s"]
            / knobs.batch_size
            * result["flops_per_step_xla"]
            / 1e12
        )
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        result["peak_gpu_mem_gb"] = stats["peak_bytes_in_use"] / 1e9
    return result


def _child_env():
    env = dict(os.environ, KERAS_BACKEND="jax")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _tagged_json(stdout, tag):
    for line in stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    return None


def run_seglayers(knobs, extra):
    """Runs `measure` in a fresh process with `extra` overriding `knobs`."""
    argv = [
        f"--{name.replace('_', '-')}={getattr(knobs, name)}"
        for name in KNOBS
        if name != "allow_cpu"
    ] + (["--allow-cpu"] if knobs.allow_cpu else [])
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--child", *argv, *shlex.split(extra)],
        capture_output=True,
        text=True,
        env=_child_env(),
        cwd=ROOT,
    )
    result = _tagged_json(process.stdout, "RESULT")
    return result or {"error": process.stderr[-3000:]}


def find_reference(path):
    if path:
        return path
    places = [os.path.join(ROOT, place, REFERENCE) for place in REFERENCE_PLACES]
    return next((p for p in places if os.path.exists(p)), places[-1])


def run_reference(args):
    """The PyTorch reference, eager and compiled, with the base run's sizes."""
    reference = find_reference(args.torch_reference)
    if not os.path.exists(reference):
        return {"error": f"no reference at {reference}: pass --torch-reference"}
    sizes = [
        "--batch",
        args.batch_size,
        "--size",
        args.size,
        "--classes",
        CLASSES,
        "--warmup",
        args.warmup,
        "--steps",
        args.steps,
    ]
    process = subprocess.run(
        [args.torch_python, "-c", _TORCH_CHILD, reference, *map(str, sizes)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found = {"torch": _tagged_json(process.stdout, "TORCH"), "path": reference}
    for line in reversed(process.stdout.splitlines()):
        if line.startswith("{"):
            found.update(json.loads(line))
            break
    if not all(k in found for k in ("eager", "compiled")):
        found["error"] = process.stderr[-3000:] or process.stdout[-3000:]
    return found


def make_rows(runs, reference):
    """Table rows: each seglayers run against PyTorch compiled; the base run
    against PyTorch eager too."""
    rows = []
    for position, (label, result) in enumerate(runs):
        if "error" in result or "error" in reference:
            continue
        args = result["args"]
        what = (
            f"UNet, {LOOPS[args['loop']]}"
            + (f" ({label})" if position else "")
            + f", {args['size']}², batch {args['batch_size']}, filters "
            f"{args['filters']}, {args['policy']}"
        )
        for mode in ("compiled", "eager") if position == 0 else ("compiled",):
            theirs = summarize([1.0 / reference[mode]["images_per_s"]])
            rows.append(
                row(
                    f"training throughput ({result['device']})",
                    "jax",
                    f"{what} vs PyTorch {mode}",
                    result["seconds_per_image"],
                    theirs,
                    "img/s",
                )
            )
    return rows


def run_line(label, result):
    """One seglayers run in words, printed as soon as it ends."""
    if "error" in result:
        return f"seglayers [{label}]: FAILED\n{result['error']}"
    xla = result.get("tflops_xla")
    return (
        f"seglayers [{label}] on {result['device']} (JAX {result['jax']}, Keras "
        f"{result['keras']}): {result['images_per_s']:,.1f} img/s best, "
        f"{result['images_per_s_median']:,.1f} median; {result['tflops']:.1f} "
        "TFLOP/s analytic"
        + (f", {xla:.1f} by XLA's cost analysis" if xla else "")
        + f"; compile {result['compile_s']:.0f} s; loss {result['loss']:.3f}"
        + (
            f"; MeanIoU {result['mean_iou']:.3f} over {result['metric_pixels']:,}"
            f" of {result['metric_pixels_expected']:,} pixels"
            if "metric_pixels" in result
            else ""
        )
    )


def reference_lines(reference, size):
    if "error" in reference:
        return [f"PyTorch reference: FAILED\n{reference['error']}"]
    lines = [
        f"PyTorch {mode} on {reference['device']} (torch "
        f"{(reference['torch'] or {}).get('version')}): "
        f"{reference[mode]['images_per_s']:,.1f} img/s, "
        f"{reference[mode]['tflops']:.1f} TFLOP/s"
        for mode in ("eager", "compiled")
    ]
    compiled = reference["compiled"]
    per_image = compiled["tflops"] * 1e12 / compiled["images_per_s"]
    if abs(per_image / unet_train_flops(size, 64) - 1) > 0.01:
        lines.append("WARNING: the reference counts FLOPs unlike unet_train_flops")
    return lines


def verdict_line(base, reference):
    if "error" in base or "error" in reference:
        return "seglayers / PyTorch compiled: no ratio (a run failed)"
    ratio = base["images_per_s"] / reference["compiled"]["images_per_s"]
    return f"seglayers / PyTorch compiled: {ratio:.2f}x (target >= {TARGET:.2f}x: " + (
        "met)" if ratio >= TARGET else "NOT met)"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--loop", choices=["step", "fit"], default="step")
    parser.add_argument(
        "--loss",
        default="dice_ce",
        choices=["dice_ce", "dice", "focal", "crossentropy"],
    )
    parser.add_argument("--metric", choices=["mean_iou", "none"], default="mean_iou")
    parser.add_argument("--policy", default="mixed_bfloat16")
    parser.add_argument(
        "--remat",
        default="none",
        choices=["none", "full", "activations", "larger_than"],
    )
    parser.add_argument(
        "--xla-flags",
        default="",
        help='added to XLA_FLAGS, e.g. "--xla-flags=--xla_gpu_..."',
    )
    parser.add_argument(
        "--allow-cpu", action="store_true", help="measure on JAX's CPU (set by --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny CPU dry run")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="ARGS",
        help="one more seglayers run with these arguments",
    )
    parser.add_argument(
        "--torch-reference",
        default=None,
        metavar="PATH",
        help=f"{REFERENCE}; by default the first of "
        f"{', '.join(REFERENCE_PLACES)} that holds it",
    )
    parser.add_argument(
        "--torch-python",
        default=sys.executable,
        metavar="PYTHON",
        help="the Python that has torch (default: this one)",
    )
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--also "--loop fit"`: argparse would read the value as an option.
    for i in reversed(range(len(argv) - 1)):
        if argv[i] == "--also":
            argv[i : i + 2] = [f"--also={argv[i + 1]}"]
    parser = build_parser()
    if "--quick" in argv:  # explicit arguments still win over these
        parser.set_defaults(allow_cpu=True, **QUICK)
    args = parser.parse_args(argv)
    if args.child:
        result = measure(args)
        result["args"] = {name: getattr(args, name) for name in KNOBS}
        print("RESULT " + json.dumps(result))
        return 0
    path = args.json or (
        os.path.join(os.environ["OUT"], "gpu_results.json")
        if os.environ.get("OUT")
        else os.path.join(ROOT, "benchmarks", "gpu_results.json")
    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    runs, reference = [], {"error": "not run: --skip-torch"}

    def save():
        rows = make_rows(runs, reference)
        with open(path, "w") as f:
            json.dump(
                {
                    "machine": machine,
                    "argv": argv,
                    "rows": rows,
                    "seglayers": dict(runs),
                    "torch": reference,
                },
                f,
                indent=1,
            )
        return rows

    # The base run and the reference first: a call stopped at its limit
    # keeps the headline; the variants come last. Each run is printed as it
    # ends, for the same reason.
    print(f"Machine: {machine}", flush=True)
    for position, extra in enumerate(["", *args.also]):
        label = extra or "base"
        print(f"seglayers [{label}] ...", file=sys.stderr, flush=True)
        runs.append((label, run_seglayers(args, extra)))
        print(run_line(*runs[-1]), flush=True)
        if position == 0 and not args.skip_torch:
            save()
            print("PyTorch reference ...", file=sys.stderr, flush=True)
            reference = run_reference(args)
            print("\n".join(reference_lines(reference, args.size)), flush=True)
        save()
    print("\n" + format_table(save()))
    print("\n" + verdict_line(runs[0][1], reference))
    print(f"JSON: {path}")
    failed = "error" in runs[0][1] or ("error" in reference and not args.skip_torch)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
