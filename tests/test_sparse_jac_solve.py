"""A sparse ``jac`` reaches today's dense methods checked and densified (small systems): same iterates as the
dense ``jac``; bad sparse Jacobians stop the solve with the boundary's message."""

import array_api_compat
import numpy as np
import pytest
import scipy.sparse as sp

import steadysolve as ss

N = 12


def _F(u, p):
    xp = array_api_compat.array_namespace(u)
    return 2.0 * u - 0.5 * (xp.roll(u, 1, axis=-1) + xp.roll(u, -1, axis=-1)) + 0.1 * u ** 3 - p


def _jac_dense(u):
    n = u.shape[-1]
    A = 2.0 * np.eye(n) - 0.5 * (np.roll(np.eye(n), 1, axis=0) + np.roll(np.eye(n), -1, axis=0))
    return A + np.diag(0.3 * u ** 2)


def _library_jac(name):
    def jac(u, p):
        J = _jac_dense(_np(u))
        if name == "numpy":
            return sp.csr_matrix(J)
        if name == "torch":
            import torch

            return torch.as_tensor(J).to_sparse_csr()
        import jax.numpy as jnp
        from jax.experimental import sparse as jsparse

        return jsparse.BCOO.fromdense(jnp.asarray(J))

    return jac


def _np(u):
    import torch

    return u.detach().numpy() if isinstance(u, torch.Tensor) else np.asarray(u)


def _pattern():
    P = np.eye(N, dtype=bool) | np.roll(np.eye(N, dtype=bool), 1, axis=0) | np.roll(np.eye(N, dtype=bool), -1, axis=0)
    return P


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_newton_with_a_sparse_jac_takes_the_dense_jacs_steps(name):
    from helpers import get_backend

    bk = get_backend(name)
    u0 = bk.asarray(np.linspace(0.0, 1.0, N))
    p = bk.asarray(np.ones(N))
    dense = ss.NonlinearProblem(_F, u0, p, jac=lambda u, p: bk.asarray(_jac_dense(_np(u))))
    sparse_prob = ss.NonlinearProblem(_F, u0, p, jac=_library_jac(name), sparsity=_pattern())
    a = ss.solve(dense, ss.NewtonRaphson(), abstol=1e-12)
    b = ss.solve(sparse_prob, ss.NewtonRaphson(), abstol=1e-12)
    assert a.retcode.name == b.retcode.name == "Success"
    assert a.stats.niter == b.stats.niter
    np.testing.assert_allclose(bk.to_numpy(b.u), bk.to_numpy(a.u), rtol=1e-14, atol=1e-14)


@pytest.mark.slow
def test_jax_sparse_jac_with_newton():
    import jax.numpy as jnp

    u0, p = jnp.linspace(0.0, 1.0, N), jnp.ones(N)
    sol = ss.solve(ss.NonlinearProblem(_F, u0, p, jac=_library_jac("jax")), ss.NewtonRaphson(), abstol=1e-12)
    assert sol.retcode.name == "Success" and float(jnp.abs(_F(sol.u, p)).max()) <= 1e-12


def test_a_sparse_jac_outside_its_pattern_or_from_the_wrong_library_stops_the_solve():
    u0, p = np.linspace(0.0, 1.0, N), np.ones(N)
    narrow = ss.NonlinearProblem(_F, u0, p, jac=_library_jac("numpy"), sparsity=np.eye(N, dtype=bool))
    with pytest.raises(ValueError, match=r"f\(u, p\) jac: the sparsity pattern misses nonzeros of jac at \(0, 1\)"):
        ss.solve(narrow, ss.NewtonRaphson())
    import torch

    wrong = ss.NonlinearProblem(_F, torch.as_tensor(u0), torch.as_tensor(p), jac=_library_jac("numpy"))
    with pytest.raises(TypeError, match="jac returned a scipy.sparse matrix for a torch u0"):
        ss.solve(wrong, ss.NewtonRaphson())


def test_fixed_point_problem_with_a_sparse_jac_of_g():
    """``jac`` is g's Jacobian; the solver sees ``J - I``."""
    u0, p = np.linspace(0.0, 1.0, N), np.ones(N)

    def g(u, p):
        return u - 0.5 * _F(u, p)

    prob = ss.FixedPointProblem(g, u0, p, jac=lambda u, p: sp.identity(N, format="csr") - 0.5 * sp.csr_matrix(
        _jac_dense(u)), sparsity=_pattern())
    sol = ss.solve(prob, ss.NewtonRaphson(), abstol=1e-12)
    assert sol.retcode.name == "Success" and np.abs(_F(sol.u, p)).max() <= 2e-12
