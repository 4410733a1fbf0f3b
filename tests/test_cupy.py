"""CuPy (GPU): the honesty matrix and the residual-stays-on-device check.

These machines have no GPU, so this module is skipped here; the array-API code path that
CuPy takes is exercised everywhere by the ``array_api_strict`` backend. On a CUDA machine
with CuPy installed it runs every algorithm on every shared problem with CuPy arrays.
"""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    if cupy.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("CuPy is installed but no CUDA device is visible", allow_module_level=True)
except Exception as e:  # pragma: no cover - depends on the driver
    pytest.skip(f"CuPy cannot reach a CUDA device: {e}", allow_module_level=True)

from helpers import PROBLEMS, assert_honest, get_backend  # noqa: E402

import steadysolve as ss  # noqa: E402

BK = get_backend("cupy")


@pytest.mark.parametrize("tp", PROBLEMS, ids=repr)
@pytest.mark.parametrize("alg", ss.available())
def test_algorithm_on_problem_cupy(tp, alg):
    prob, kw = tp.make(BK)
    if alg in tp.refused_by:
        with pytest.raises(ValueError, match="max_size"):
            ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
        return
    sol = ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
    assert isinstance(sol.u, cupy.ndarray) and isinstance(sol.resid, cupy.ndarray)
    assert_honest(BK, prob, sol, kw["abstol"], kw["reltol"], batch_axis=kw.get("batch_axis"))
    if alg in tp.must_solve:
        assert sol.successful, f"{alg} on {tp.name}: {sol!r}"
        np.testing.assert_allclose(BK.to_numpy(sol.u), tp.reference(), atol=tp.atol, rtol=0)


def test_linear_solve_cupy():
    rng = np.random.default_rng(0)
    A = np.eye(20) * 4 + rng.normal(size=(20, 20)) * 0.3
    b = rng.normal(size=20)
    Ac, bc = cupy.asarray(A), cupy.asarray(b)
    sol = ss.linear_solve(lambda v: Ac @ v, bc, ss.GMRES(rtol=1e-12))
    assert sol.successful and isinstance(sol.x, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(sol.x), np.linalg.solve(A, b), atol=1e-9)


@pytest.mark.parametrize("method", ss.available("bracketing"))
def test_bracketing_cupy(method):
    """Scalar roots on a batch of CuPy brackets (large enough for the loop to narrow to the running ones)."""
    rng = np.random.default_rng(0)
    e, M = rng.uniform(0.0, 0.9, 10_000), rng.uniform(0.01, 6.0, 10_000)
    f = lambda E, p: E - p[0] * cupy.sin(E) - p[1]  # noqa: E731
    prob = ss.IntervalNonlinearProblem(f, (cupy.zeros(10_000), cupy.full(10_000, 2 * np.pi)),
                                       (cupy.asarray(e), cupy.asarray(M)))
    sol = ss.solve(prob, method)
    assert sol.successful and isinstance(sol.u, cupy.ndarray) and isinstance(sol.stats.bracket[0], cupy.ndarray)
    u = cupy.asnumpy(sol.u)
    np.testing.assert_allclose(u - e * np.sin(u), M, atol=1e-11)
