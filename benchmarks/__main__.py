"""Runs every benchmark on every backend and prints one table.

    python -m benchmarks                   # everything, default sizes
    python -m benchmarks --quick           # smaller sizes, a smoke run
    python -m benchmarks --only metric_update --backends jax

Each (benchmark, backend) runs in a fresh process, since the Keras backend is
fixed at import. Results are also written as JSON (`--json`, by default
benchmarks/results.json).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

MODULES = [
    "metric_update",
    "input_pipeline",
    "data_generation",
    "scaling",
    "tiled_prediction",
    "volume_conv",
    "export",
]
BACKENDS = ["tensorflow", "jax"]

_CHILD = """
import json, sys, importlib
module = importlib.import_module("benchmarks." + sys.argv[1])
rows = module.run(sys.argv[2], quick=sys.argv[3] == "1")
print("RESULT " + json.dumps(rows))
"""


def run_one(module, backend, quick):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, module, backend, "1" if quick else "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(result.stderr[-3000:])
    raise RuntimeError(f"benchmark {module} on {backend} failed")


def format_table(rows):
    lines = [
        "| question | backend | what | seglayers | baseline | unit | ratio "
        "| median vs best |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        digits = 2 if r["unit"] == "exponent" else 1
        lines.append(
            f"| {r['question']} | {r['backend']} | {r['what']} | "
            f"{r['ours']:.{digits}f} | {r['baseline']:.{digits}f} | {r['unit']} | "
            f"**{r['ratio']:.2f}×** | +{100 * r['spread']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", nargs="*", choices=MODULES, default=MODULES)
    parser.add_argument("--backends", nargs="*", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=os.path.join("benchmarks", "results.json"))
    args = parser.parse_args(argv)
    rows, seconds = [], {}
    start = time.perf_counter()
    for module in args.only:
        for backend in args.backends:
            print(f"running {module} on {backend} ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            rows.extend(run_one(module, backend, args.quick))
            seconds[f"{module} on {backend}"] = round(time.perf_counter() - began, 1)
            print(f"  {seconds[f'{module} on {backend}']} s", file=sys.stderr)
    total = time.perf_counter() - start
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    print(f"Machine: {machine}\n")
    print(format_table(rows))
    print(f"\nTook {total / 60:.1f} min ({len(seconds)} runs).")
    with open(args.json, "w") as f:
        record = {"machine": machine, "seconds": seconds, "rows": rows}
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
