"""The SciMLBenchmarks Brusselator module (benchmarks/problems/bruss.py) against a loop transcription
of the benchmark's Julia code, on every backend; its analytic Jacobian and pattern."""

import numpy as np
import pytest

from benchmarks.problems import bruss


def _julia_loop(u, N):
    """``brusselator_2d_loop`` of SciMLBenchmarks ``NonlinearProblem/bruss`` with 0-based indices: the flat
    index of Julia's column-major ``(N, N, 2)`` array is ``i + N j + N^2 c``."""
    A, B, alpha = 3.4, 1.0, 10.0
    dx = 1.0 / (N - 1)
    alpha = alpha / dx ** 2
    xyd = [k / (N - 1) for k in range(N)]

    def k(i, j, c):
        return i + N * j + N * N * c

    def limit(a):
        return 0 if a == N else N - 1 if a == -1 else a

    du = np.empty_like(u)
    for j in range(N):
        for i in range(N):
            x, y = xyd[i], xyd[j]
            ip1, im1, jp1, jm1 = limit(i + 1), limit(i - 1), limit(j + 1), limit(j - 1)
            f = 5.0 if (x - 0.3) ** 2 + (y - 0.6) ** 2 <= 0.01 else 0.0
            uij, vij = u[k(i, j, 0)], u[k(i, j, 1)]
            du[k(i, j, 0)] = (alpha * (u[k(im1, j, 0)] + u[k(ip1, j, 0)] + u[k(i, jp1, 0)] + u[k(i, jm1, 0)] - 4 * uij)
                              + B + uij ** 2 * vij - (A + 1) * uij + f)
            du[k(i, j, 1)] = (alpha * (u[k(im1, j, 1)] + u[k(ip1, j, 1)] + u[k(i, jp1, 1)] + u[k(i, jm1, 1)] - 4 * vij)
                              + A * uij - uij ** 2 * vij)
    return du


def _julia_u0(N):
    u = np.empty(2 * N * N)
    xyd = [k / (N - 1) for k in range(N)]
    for j in range(N):
        for i in range(N):
            x, y = xyd[i], xyd[j]
            u[i + N * j] = 22 * (y * (1 - y)) ** 1.5
            u[i + N * j + N * N] = 27 * (x * (1 - x)) ** 1.5
    return u


@pytest.mark.parametrize("N", [8, 11])
def test_start_and_residual_are_the_benchmarks(N):
    F, u0, p = bruss.problem(N)
    np.testing.assert_allclose(u0, _julia_u0(N), rtol=1e-15, atol=0)  # NumPy and Python pow may differ by an ulp
    rng = np.random.default_rng(N)
    for u in (u0, rng.uniform(0.0, 4.0, u0.size)):
        np.testing.assert_allclose(F(u, p), _julia_loop(u, N), rtol=1e-13, atol=1e-9)
    assert p.forcing.sum() > 0  # the disc holds grid points at these sizes


def test_constants():
    assert (bruss.A, bruss.B, bruss.ALPHA) == (3.4, 1.0, 10.0)
    assert bruss.params(16).alpha == pytest.approx(10.0 * 15 ** 2)
    assert bruss.SIZES == (8, 16, 32, 64, 128)


def test_residual_on_every_backend_and_batched(bk):
    F, u0, p = bruss.problem(8)
    rng = np.random.default_rng(0)
    U = np.stack([u0, rng.uniform(0.0, 3.0, u0.size)])
    out = bk.to_numpy(F(bk.asarray(U), p))
    np.testing.assert_allclose(out, np.stack([_julia_loop(U[0], 8), _julia_loop(U[1], 8)]), rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("N", [8, 16])
def test_analytic_jacobian_and_pattern(N):
    F, u0, p = bruss.problem(N)
    u = u0 + np.random.default_rng(1).uniform(0.1, 0.5, u0.size)  # no zero species: every entry nonzero
    J = bruss.jacobian(u, p)
    n = u.size
    h = 1e-6
    dense = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        dense[:, j] = (F(u + e, p) - F(u - e, p)) / (2 * h)
    np.testing.assert_allclose(J.toarray(), dense, atol=1e-6 * np.abs(dense).max())
    P = bruss.sparsity(N)
    assert P.shape == (n, n) and P.dtype == bool
    assert (np.diff(P.indptr) == 6).all()
    assert ((J != 0) != P).nnz == 0  # the pattern is the Jacobian's structure, no more


def test_small_grids_are_refused():
    with pytest.raises(ValueError, match="N must be >= 3"):
        bruss.params(2)
