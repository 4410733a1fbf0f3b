"""Stiff steady states: a small set shared by tests/test_stiff.py and benchmarks/stiff.py (issue 29).

Every problem is written once against the array API: ``problem.f(xp)`` returns ``f(u, p, t)``
(autonomous: ``t`` is ignored) and ``problem.jac(xp)`` the analytic dense Jacobian ``jac(u, p)``
(``(n, n)`` for a 1-D ``u``; ``(..., n, n)`` for a batch where noted). ``u0`` and ``p`` are NumPy
arrays; ``reference()`` is the steady state the flow reaches from ``u0`` (NumPy), or None.

* ``hires`` (n = 8): Schäfer's plant-physiology model, the HIRES problem of Hairer & Wanner's test
  set (Solving ODEs II, IV.10). ``y7 + y8`` is conserved (its rows sum to zero), so the Jacobian is
  singular everywhere and the steady state is the one on the line ``y7 + y8 = 0.0057`` of ``u0``;
  the reference is Newton's on ``f`` with the last row replaced by that law. The flow settles by
  ``t ~ 1e4``.
* ``robertson`` (n = 3): Robertson's autocatalytic reaction. ``y1 + y2 + y3 = 1`` is conserved; the
  steady state ``(0, 0, 1)`` is unique on that plane but degenerate: the Jacobian there has rank 1
  (a second zero eigenvalue comes from the quadratic ``3e7 y2^2`` term), the approach is algebraic
  (``y1 ~ 1 / t``), so ``||f|| <= tol`` needs ``t ~ 1 / tol``. Well posed, badly conditioned.
* ``orego`` (n = 3): the Oregonator (Field & Noyes) of the same test set. *No stable steady state*:
  both equilibria, ``0`` and ``(488.18, 0.998, 488.18)``, have an eigenvalue with positive real part
  (77.3 and 18.7); the flow from ``(1, 2, 3)`` is a limit cycle. Time stepping must not report
  ``Success``; a root finder may land on an equilibrium the flow never reaches (``reference()`` is None).
* ``stiff_linear`` (n = 50): ``du/dt = -A (u - u*)``, ``A = Q diag(lambda) Q^T`` with ``lambda`` log-spaced
  over six decades (1 to 1e6) and ``Q`` a fixed random orthogonal matrix.
* ``brusselator(N)`` (n = 2 N): the 1-D Brusselator ``u_t = alpha u_xx + kappa (A(x) - (B + 1) u + u^2 v)``,
  ``v_t = alpha v_xx + kappa (B u - u^2 v)`` on ``(0, 1)`` with Dirichlet values ``u = A``, ``v = B / A``,
  ``A(x) = 1 + sin(pi x) / 2``, ``B = 1.5 < 1 + A^2`` (below the Hopf threshold: a stable steady state),
  ``alpha = 0.02``, fast kinetics ``kappa = 100``: eigenvalues from ~ -0.3 to ~ -4 alpha (N + 1)^2.
  State ``[u; v]``; the reference is Newton's with SciPy's sparse LU. It also has ``sparse_jac``, the
  same Jacobian as a SciPy CSR matrix (5 nonzeros per row at most).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

__all__ = ["StiffProblem", "PROBLEMS", "hires", "robertson", "orego", "stiff_linear", "brusselator",
           "brusselator_pattern", "by_name"]


@dataclass(frozen=True)
class StiffProblem:
    name: str
    n: int
    f: Callable  # f(xp) -> f(u, p, t)
    jac: Callable  # jac(xp) -> jac(u, p)
    u0: np.ndarray
    p: object = None
    sparse_jac: Optional[Callable] = None  # jac(u, p) -> scipy.sparse CSR (NumPy, 1-D u), where the problem is sparse
    stable: bool = True  # the flow from u0 reaches a steady state
    notes: str = ""
    _ref: Optional[Callable] = field(default=None, repr=False)

    def reference(self):
        return None if self._ref is None else self._ref()


def _newton(F, J, x, iters=50, solve=np.linalg.solve):
    for _ in range(iters):
        dx = solve(J(x), -F(x))
        x = x + dx
        if np.max(np.abs(dx)) <= 1e-15 * max(1.0, np.max(np.abs(x))):
            break
    return x


# -- HIRES ------------------------------------------------------------------------------------

def _hires_f(xp):
    def f(u, p, t):
        y1, y2, y3, y4, y5, y6, y7, y8 = (u[..., i] for i in range(8))
        r = 280.0 * y6 * y8
        return xp.stack([-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
                         -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                         -1.745 * y5 + 0.43 * y6 + 0.43 * y7, -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                         r - 1.81 * y7, -r + 1.81 * y7], axis=-1)
    return f


def _hires_jac(xp):
    def jac(u, p):
        y6, y8 = u[..., 5], u[..., 7]
        z = 0.0 * y6
        a, b = 280.0 * y8, 280.0 * y6
        rows = [[-1.71, 0.43, 8.32, 0, 0, 0, 0, 0], [1.71, -8.75, 0, 0, 0, 0, 0, 0],
                [0, 0, -10.03, 0.43, 0.035, 0, 0, 0], [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
                [0, 0, 0, 0, -1.745, 0.43, 0.43, 0], [0, 0, 0, 0.69, 1.71, -0.43 - a, 0.69, -b],
                [0, 0, 0, 0, 0, a, -1.81, b], [0, 0, 0, 0, 0, -a, 1.81, -b]]
        return xp.stack([xp.stack([z + c for c in row], axis=-1) for row in rows], axis=-2)
    return jac


def _hires_ref():
    F, J = _hires_f(np), _hires_jac(np)
    total = 0.0057  # y7 + y8 of u0

    def G(y):
        r = F(y, None, 0.0)
        r[7] = y[6] + y[7] - total
        return r

    def JG(y):
        M = J(y, None).copy()
        M[7] = 0.0
        M[7, 6] = M[7, 7] = 1.0
        return M

    return _newton(G, JG, np.array([6.7e-4, 1.3e-4, 4.7e-5, 1.0e-3, 6.0e-4, 1.4e-3, 1.0e-3, 4.7e-3]))


# -- Robertson ---------------------------------------------------------------------------------

def _rober_f(xp):
    def f(u, p, t):
        y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
        a, b = 0.04 * y1 - 1e4 * y2 * y3, 3e7 * y2 * y2
        return xp.stack([-a, a - b, b], axis=-1)
    return f


def _rober_jac(xp):
    def jac(u, p):
        y2, y3 = u[..., 1], u[..., 2]
        z = 0.0 * y2
        rows = [[z - 0.04, 1e4 * y3, 1e4 * y2], [z + 0.04, -1e4 * y3 - 6e7 * y2, -1e4 * y2], [z, 6e7 * y2, z]]
        return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)
    return jac


# -- OREGO -------------------------------------------------------------------------------------

_S, _Q, _W = 77.27, 8.375e-6, 0.161


def _orego_f(xp):
    def f(u, p, t):
        y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
        return xp.stack([_S * (y2 + y1 * (1.0 - _Q * y1 - y2)), (y3 - (1.0 + y1) * y2) / _S, _W * (y1 - y3)], axis=-1)
    return f


def _orego_jac(xp):
    def jac(u, p):
        y1, y2 = u[..., 0], u[..., 1]
        z = 0.0 * y1
        rows = [[_S * (1.0 - 2 * _Q * y1 - y2), _S * (1.0 - y1), z], [-y2 / _S, -(1.0 + y1) / _S, z + 1.0 / _S],
                [z + _W, z, z - _W]]
        return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)
    return jac


# -- stiff linear ------------------------------------------------------------------------------

def _linear_data(n=50):
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    lam = np.logspace(0.0, 6.0, n)
    return (Q * lam) @ Q.T, rng.uniform(0.5, 1.5, size=n)


def _linear_f(xp):
    def f(u, p, t):
        return -((u - p[1]) @ p[0].T)
    return f


def _linear_jac(xp):
    def jac(u, p):
        return xp.broadcast_to(-p[0], tuple(u.shape[:-1]) + tuple(p[0].shape))
    return jac


# -- Brusselator 1-D ---------------------------------------------------------------------------

_ALPHA, _B, _KAPPA = 0.02, 1.5, 100.0


def _bruss_f(xp, N):
    c = _ALPHA * (N + 1) ** 2

    def f(u, A, t):  # p = A(x) at the grid points
        U, V = u[..., :N], u[..., N:]
        ones = xp.ones_like(U[..., :1])
        lap_u = xp.concat([ones, U[..., :-1]], axis=-1) - 2.0 * U + xp.concat([U[..., 1:], ones], axis=-1)
        vb = _B * ones
        lap_v = xp.concat([vb, V[..., :-1]], axis=-1) - 2.0 * V + xp.concat([V[..., 1:], vb], axis=-1)
        uuv = U * U * V
        return xp.concat([c * lap_u + _KAPPA * (A - (_B + 1.0) * U + uuv),
                          c * lap_v + _KAPPA * (_B * U - uuv)], axis=-1)
    return f


def _bruss_jac(xp, N):
    c = _ALPHA * (N + 1) ** 2

    def jac(u, A):  # dense (2N, 2N), 1-D u only
        U, V = u[:N], u[N:]
        eye = xp.eye(N, dtype=u.dtype)
        T = c * (xp.eye(N, k=1, dtype=u.dtype) + xp.eye(N, k=-1, dtype=u.dtype) - 2.0 * eye)
        juu = T + eye * (_KAPPA * (2.0 * U * V - (_B + 1.0)))
        juv = eye * (_KAPPA * U * U)
        jvu = eye * (_KAPPA * (_B - 2.0 * U * V))
        jvv = T - juv
        return xp.concat([xp.concat([juu, juv], axis=1), xp.concat([jvu, jvv], axis=1)], axis=0)
    return jac


def _bruss_jac_sparse(N):
    c = _ALPHA * (N + 1) ** 2
    d, e = np.arange(N), np.arange(N - 1)
    # entries: U-U diagonal, sub, super; U-V and V-U diagonals; V-V diagonal, sub, super
    rows = np.concatenate([d, e + 1, e, d, N + d, N + d, N + e + 1, N + e])
    cols = np.concatenate([d, e, e + 1, N + d, d, N + d, N + e, N + e + 1])
    order = np.lexsort((cols, rows))  # CSR order, built once: each call only fills the values
    indices = cols[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=2 * N))])
    off = np.full(N - 1, c)

    def jac(u, A):  # (2N, 2N) CSR: the same entries as _bruss_jac
        from scipy import sparse

        U, V = u[:N], u[N:]
        uv, uu = 2.0 * U * V, _KAPPA * U * U
        data = np.concatenate([-2.0 * c + _KAPPA * (uv - (_B + 1.0)), off, off, uu, _KAPPA * (_B - uv),
                               -2.0 * c - uu, off, off])
        return sparse.csr_matrix((data[order], indices, indptr), shape=(2 * N, 2 * N))
    return jac


def brusselator_pattern(N: int):
    """The structure of the Brusselator's Jacobian, ``(2N, 2N)`` booleans: tridiagonal blocks on the
    diagonal, diagonal coupling blocks (values at a point can vanish: ``B - 2 U V = 0`` where ``U = B / 2V``)."""
    d = np.arange(N)
    M = np.zeros((2 * N, 2 * N), dtype=bool)
    for r0, c0 in ((0, 0), (N, N), (0, N), (N, 0)):
        M[r0 + d, c0 + d] = True
    for r0 in (0, N):
        M[r0 + d[1:], r0 + d[:-1]] = M[r0 + d[:-1], r0 + d[1:]] = True
    return M


def _bruss_ref(N, A):
    def ref():
        from scipy import sparse
        from scipy.sparse.linalg import spsolve

        F, J = _bruss_f(np, N), _bruss_jac(np, N)
        x = np.concatenate([A, _B / A])
        return _newton(lambda y: F(y, A, 0.0), lambda y: sparse.csc_matrix(J(y, A)), x, solve=spsolve)
    return ref


def brusselator(N: int = 1000) -> StiffProblem:
    x = np.arange(1, N + 1) / (N + 1)
    A = 1.0 + 0.5 * np.sin(math.pi * x)
    u0 = np.concatenate([1.0 + 0.5 * np.sin(2 * math.pi * x), np.full(N, _B)])
    return StiffProblem(f"brusselator_1d N={N}", 2 * N, lambda xp: _bruss_f(xp, N), lambda xp: _bruss_jac(xp, N),
                        u0, A, sparse_jac=_bruss_jac_sparse(N), notes="diffusion eigenvalues to -4 alpha (N+1)^2",
                        _ref=_bruss_ref(N, A))


hires = StiffProblem("hires", 8, _hires_f, _hires_jac, np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057]),
                     notes="y7 + y8 conserved: singular Jacobian", _ref=_hires_ref)
robertson = StiffProblem("robertson", 3, _rober_f, _rober_jac, np.array([1.0, 0.0, 0.0]),
                         notes="y1 + y2 + y3 conserved; rank-1 Jacobian at (0, 0, 1)",
                         _ref=lambda: np.array([0.0, 0.0, 1.0]))
orego = StiffProblem("orego", 3, _orego_f, _orego_jac, np.array([1.0, 2.0, 3.0]), stable=False,
                     notes="limit cycle: both equilibria unstable")
_A, _U = _linear_data()
stiff_linear = StiffProblem("stiff_linear", 50, _linear_f, _linear_jac, np.zeros(50), (_A, _U),
                            notes="eigenvalues 1 .. 1e6", _ref=lambda: _U.copy())

PROBLEMS = [hires, robertson, orego, stiff_linear]


def by_name(name: str) -> StiffProblem:
    for prob in PROBLEMS:
        if prob.name == name:
            return prob
    raise KeyError(name)
