"""Shared timing harness: warm-up excluded, repeats, best time and spread.

Each benchmark module of the runner has `run(backend, quick) -> list[dict]`
and runs in its own process (the Keras backend is fixed at import). A row compares
"ours" with a "baseline" measured in the same process, interleaved, so slow
phases of a shared machine hit both; the headline is their ratio.

The value compared is the best (minimum) of the repeats: on this shared
2-core machine the same `fit` takes either ~5 s or ~10 s at random, for
either model, and noise only ever adds time. The spread column is how much
slower the median was than the best, so a noisy row shows it.
"""

import statistics
import time


def time_call(fn, repeats=7, warmup=2):
    """Seconds per call of `fn()`: median, min, max over `repeats`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return summarize(times)


def summarize(times):
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "repeats": len(times),
    }


def time_pair(ours, baseline, repeats=7, warmup=2):
    """Times two callables alternately; returns their two summaries of
    wall-clock seconds, each with the summary of the same calls' CPU
    seconds (`time.process_time`: every thread of the process) under
    `"cpu"`."""
    for _ in range(warmup):
        ours()
        baseline()
    walls, cpus = ([], []), ([], [])
    for _ in range(repeats):
        for i, fn in enumerate((ours, baseline)):
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            walls[i].append(time.perf_counter() - start)
            cpus[i].append(time.process_time() - cpu_start)
    return tuple(dict(summarize(w), cpu=summarize(c)) for w, c in zip(walls, cpus))


def row(question, backend, what, ours, baseline, unit, per_call=1.0, higher=True):
    """One table row; `ours`/`baseline` are summaries of seconds per call.

    `per_call` converts seconds into the unit (e.g. images per call for
    images/s, or 1000 for ms); `higher` says whether a larger value is better.
    The ratio is always "how many times better ours is" (> 1: ours wins).
    """
    if higher:
        value = per_call / ours["min"]
        base = per_call / baseline["min"]
        ratio = value / base
    else:
        value = ours["min"] * per_call
        base = baseline["min"] * per_call
        ratio = base / value
    spread = max((s["median"] - s["min"]) / s["min"] for s in (ours, baseline))
    return {
        "question": question,
        "backend": backend,
        "what": what,
        "ours": value,
        "baseline": base,
        "unit": unit,
        "ratio": ratio,
        "spread": spread,
        "repeats": ours["repeats"],
    }


# The peak resident set of this process's own memory: VmHWM, not
# `ru_maxrss`, which Linux carries over from the parent across fork and exec
# (a child of a 3 GB process reports at least 3 GB).
_MEMORY_CHILD = """
import sys
def peak_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
setup, work = sys.argv[1], sys.argv[2]
namespace = {}
exec(setup, namespace)
before = peak_kb()
exec(work, namespace)
after = peak_kb()
print("PEAK_KB", before, after)
"""


def peak_memory_mb(setup, work, backend):
    """How far `work` raises the peak resident set above `setup`'s.

    Returns `{"mb": ..., "peak_mb": ...}` (the latter the process's whole
    peak, imports included), plus `"seconds"` if `work` prints a line
    `SECONDS <float>`.

    Both are Python source run in a fresh process (peak memory is a
    process-lifetime figure): `setup` imports and builds what `work` uses, so
    the figure is what `work` itself needs at its peak (Linux `VmHWM`).
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, setup, work],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    measured = {}
    for line in result.stdout.splitlines():
        if line.startswith("SECONDS "):
            measured["seconds"] = float(line.split()[1])
        if line.startswith("PEAK_KB "):
            before, after = (int(v) for v in line.split()[1:])
            measured["mb"] = (after - before) / 1024
            measured["peak_mb"] = after / 1024
    if "mb" not in measured:
        sys.stderr.write(result.stderr[-3000:])
        raise RuntimeError("memory measurement failed")
    return measured
