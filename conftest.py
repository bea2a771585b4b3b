"""Test setup shared by the tests and the doctests in `seglayers/`."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The tests compile hundreds of tiny models, metrics and losses, and XLA's
# CPU compiler spends their time in LLVM's optimizer, not in running them:
# without it a tiny UNet's `predict` and `fit` on JAX compile with 2.4x less
# CPU time (12 s against 29 s, measured). Set before Keras is imported, and
# inherited by the fresh processes the tests start; users' runs keep XLA's
# defaults.
_FLAG = "--xla_backend_optimization_level=0"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

# JAX compiles each new shape of an op once per process: every model built
# compiles its weights' initializers (the harness's UNet 75 times, 8 s of
# loading a `.keras` file), and every test's worker and fresh process does
# it again. A compilation cache shared by the workers and the processes they
# start lets each compile once per run: on this project's 2-core machine, the
# JAX tests of `tests/models/unet_test.py`, `tests/callbacks`,
# `tests/metrics` and `tests/losses` took 277 s against 345 s from an empty
# cache (2026-11-29). Entries are keyed by the computation, JAX's version and
# its flags, so a cache left by an earlier run is safe to reuse. No size
# limit: with one, JAX lists and stats every cached file at each write (a
# quarter of the whole run's CPU time went to the kernel).
# One folder per user: another user's would be unwritable, and JAX's warning
# about it an error here.
_USER = os.getuid() if hasattr(os, "getuid") else "user"
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"seglayers-tests-jax-cache-{_USER}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import seglayers  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts with float32, fresh layer names and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    # Without the full garbage collection `clear_session` runs by default:
    # 0.28 s a test once the heap holds TensorFlow and a few models (458,000
    # objects), about 1.8 min of each backend's run on two workers. Python's
    # own collector still runs.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["keras"] = keras
    doctest_namespace["np"] = np
    for name in seglayers.__all__:
        doctest_namespace[name] = getattr(seglayers, name)
