import os
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from helpers import BACKENDS, get_backend  # noqa: E402


@pytest.fixture(params=BACKENDS)
def bk(request):
    """Every array-touching test runs on NumPy, array_api_strict, PyTorch and JAX."""
    return get_backend(request.param)
