"""Test-session settings, shared by pytest's worker processes and the fresh
processes the tests start (they inherit the environment)."""

import os

# The tests compile hundreds of tiny models, metrics and losses, where XLA's
# CPU compiler spends its time in LLVM's optimizer, not in running them:
# without optimization the JAX suite needs about 2.4x less CPU time to compile
# a tiny UNet's predict and fit (12 s against 29 s, measured). Users' runs
# keep XLA's defaults; only the test session (and its subprocesses) sets this.
_FLAG = "--xla_backend_optimization_level=0"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
