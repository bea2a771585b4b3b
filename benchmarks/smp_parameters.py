"""Decoder + head parameters against segmentation_models.pytorch (smp).

    python -m benchmarks.smp_parameters --smp-python /tmp/smpvenv/bin/python

For each architecture, the parameters of the decoder and head (the whole
model minus its encoder) of seglayers' model and of smp's, over encoders
with the same feature channels: smp's `resnet34` (64, 64, 128, 256, 512 at
strides 2 to 32) and, for seglayers, a functional Keras CNN with those
channels at those strides. Trainable parameters on both sides: PyTorch's
`parameters()` leaves out batch normalization's running statistics, which
Keras counts among its (non-trainable) weights. smp's DeepLabV3+ dilates
its encoder, so its ASPP reads the deepest stage (512 channels) at stride
16; seglayers' reads the encoder's stride-16 features, so its CNN has 512
channels there.

smp and PyTorch are not seglayers dependencies: they live in a virtual
environment of their own, whose Python this module runs in a subprocess
(`--smp-python`, or the `SEGLAYERS_SMP_PYTHON` environment variable):

    python -m venv /tmp/smpvenv
    /tmp/smpvenv/bin/pip install torch==2.13.0 segmentation-models-pytorch

Rows are in the benchmarks' format (unit: thousands of parameters; the
ratio is smp's / seglayers', > 1: seglayers' decoder is smaller); the
Markdown table after them is the one in the README.
"""

import argparse
import json
import os
import subprocess
import sys

from benchmarks.harness import row, summarize

RESNET34_CHANNELS = (64, 64, 128, 256, 512)
NUM_CLASSES = 4
SMP_PYTHON_VARIABLE = "SEGLAYERS_SMP_PYTHON"

# seglayers model, its arguments, smp's class, and what the row says.
COMPARISONS = [
    ("UNet", {}, "Unet", "defaults"),
    ("UNet", {"upsampling": "nearest"}, "Unet", "upsampling='nearest', as smp"),
    ("UNetPlusPlus", {}, "UnetPlusPlus", "defaults"),
    (
        "UNetPlusPlus",
        {"upsampling": "nearest"},
        "UnetPlusPlus",
        "upsampling='nearest', as smp",
    ),
    ("FPN", {}, "FPN", "defaults"),
    ("DeepLabV3Plus", {}, "DeepLabV3Plus", "defaults"),
]

# The first lines of every script smp's Python runs (also
# `benchmarks.pytorch_peers`'): a PyPI torchvision built for CUDA cannot
# load its operators next to a CPU torch ("operator torchvision::nms does
# not exist", raised while registering their fake kernels for
# torch.compile). smp's models need none of them.
SMP_IMPORT = """
import sys, types
sys.modules["torchvision._meta_registrations"] = types.ModuleType("stub")
import segmentation_models_pytorch as smp
"""

# Run by smp's Python: prints {class name: decoder + head parameters}.
_SMP_CHILD = (
    SMP_IMPORT
    + """
import json

counts = {"version": smp.__version__}
for name in sys.argv[2:]:
    model = getattr(smp, name)(
        "resnet34", encoder_weights=None, classes=int(sys.argv[1])
    )
    assert tuple(model.encoder.out_channels[1:]) == (64, 64, 128, 256, 512)
    counts[name] = sum(
        p.numel() for part in (model.decoder, model.segmentation_head)
        for p in part.parameters()
    )
print("SMP " + json.dumps(counts))
"""
)


def check_smp_python(smp_python, module, flag):
    """Stops `module` with the way to make smp's Python if none was given."""
    if not smp_python:
        raise SystemExit(
            f"{module} needs a Python with PyTorch and "
            f"segmentation-models-pytorch: pass {flag} PATH or set "
            f"{SMP_PYTHON_VARIABLE}. To make one: python -m venv /tmp/smpvenv && "
            "/tmp/smpvenv/bin/pip install torch==2.13.0 segmentation-models-pytorch"
        )


def smp_counts(smp_python, num_classes=NUM_CLASSES):
    """smp's decoder + head parameters by class name, and its version."""
    check_smp_python(smp_python, "benchmarks.smp_parameters", "--smp-python")
    names = sorted({smp_name for _, _, smp_name, _ in COMPARISONS})
    result = subprocess.run(
        [smp_python, "-W", "ignore", "-c", _SMP_CHILD, str(num_classes), *names],
        capture_output=True,
        text=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("SMP "):
            return json.loads(line[len("SMP ") :])
    raise SystemExit(
        f"{smp_python} could not count smp's parameters (is "
        "segmentation-models-pytorch installed there?):\n" + result.stderr[-2000:]
    )


def feature_cnn(channels, strides):
    """A functional Keras CNN whose last layer at each stride in `strides`
    has the matching number of `channels` (what the encoder resolver
    takes as that level's features)."""
    import keras

    inputs = keras.Input((None, None, 3))
    x, stride = inputs, 1
    for width, target in zip(channels, strides):
        step = target // stride
        x = keras.layers.Conv2D(width, 3, strides=step, padding="same")(x)
        stride = target
    return keras.Model(inputs, x, name="resnet34_channels")


def seglayers_count(name, kwargs, num_classes=NUM_CLASSES):
    """Trainable parameters of seglayers' model `name` minus its encoder's,
    over a CNN with resnet34's pyramid channels."""
    import seglayers

    if name == "DeepLabV3Plus":  # dilated in smp: its deepest stage at 16
        encoder = feature_cnn((64, 64, 128, 256, 512), (2, 4, 8, 16, 16))
    else:
        encoder = feature_cnn(RESNET34_CHANNELS, (2, 4, 8, 16, 32))
    model = getattr(seglayers, name)(num_classes, encoder=encoder, **kwargs)
    model.build((None, None, None, 3))

    def count(layer):
        return sum(int(w.numpy().size) for w in layer.trainable_weights)

    return count(model) - count(model.encoder)


def _arguments(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "defaults"


def comparisons(smp_python, num_classes=NUM_CLASSES):
    """One dict per comparison: model, settings, both counts."""
    smp = smp_counts(smp_python, num_classes)
    found = []
    for name, kwargs, smp_name, note in COMPARISONS:
        found.append(
            {
                "model": name,
                "settings": note,
                "arguments": _arguments(kwargs),
                "smp_model": f"smp.{smp_name}",
                "seglayers": seglayers_count(name, kwargs, num_classes),
                "smp": smp[smp_name],
                "smp_version": smp["version"],
            }
        )
    return found


def rows(found, backend):
    """The comparisons as benchmark rows: thousands of parameters, the
    ratio smp's / seglayers'."""
    return [
        row(
            "decoder + head parameters",
            backend,
            f"{f['model']} ({f['settings']}) vs {f['smp_model']}",
            summarize([f["seglayers"]]),
            summarize([f["smp"]]),
            "k parameters",
            per_call=1 / 1000,
            higher=False,
        )
        for f in found
    ]


def run(backend, quick=False, smp_python=None):
    """Benchmark rows (the `python -m benchmarks` module interface)."""
    smp_python = smp_python or os.environ.get(SMP_PYTHON_VARIABLE)
    return rows(comparisons(smp_python), backend)


def markdown(found):
    lines = [
        "| seglayers | smp | seglayers decoder + head | smp decoder + head "
        "| difference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for f in found:
        lines.append(
            f"| `{f['model']}` ({f['settings']}) | `{f['smp_model']}` | "
            f"{f['seglayers']:,} | {f['smp']:,} | {f['seglayers'] - f['smp']:+,} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smp_parameters")
    parser.add_argument(
        "--smp-python",
        default=os.environ.get(SMP_PYTHON_VARIABLE),
        help=f"a Python with torch and smp (default: ${SMP_PYTHON_VARIABLE})",
    )
    args = parser.parse_args(argv)
    import keras

    from benchmarks.__main__ import format_table

    found = comparisons(args.smp_python)
    print(format_table(rows(found, keras.backend.backend())))
    version = found[0]["smp_version"]
    print(f"\nsmp {version}, resnet34 channels, {NUM_CLASSES} classes\n")
    print(markdown(found))


if __name__ == "__main__":
    sys.exit(main())
