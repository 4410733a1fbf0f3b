import os
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA compiles hundreds of small programs here and runs each for microseconds: its backend (LLVM)
# optimisation is a third of the compile time and buys nothing a test checks (the arithmetic keeps IEEE
# semantics at every level).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# One thread per test process: the suite's parallelism is pytest-xdist's workers (`-n auto`, docs/testing.md), and
# threads of the same library on a busy core wait for each other. Subprocesses (examples, DDP) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from helpers import BACKENDS, get_backend  # noqa: E402


def pytest_collection_finish(session):
    if "torch" in sys.modules:  # imported by the test modules (collection), never here for nothing
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(params=BACKENDS)
def bk(request):
    """Every array-touching test runs on NumPy, array_api_strict, PyTorch and JAX."""
    return get_backend(request.param)
