"""The honesty matrix: problems every algorithm of the package runs on, written once against the array API.

Two kinds. Problems with a root carry a NumPy ``reference`` and the algorithms that ``must_solve``
them (the Chandrasekhar H-equation, SciPy's 2-D nonlinear Laplace problem, a batched tanh-MLP DEQ
cell, a linear contraction, a stiff steady state). Problems without one (``no_root=True``) are the
classes where ``Success`` would be a lie: a residual with a positive floor as the iterate runs away,
loose tolerances, low precision, a residual that rounds to zero at a huge iterate, NaN mid-solve.

A problem's ``make(xp)`` builds it in the array namespace ``xp`` (NumPy, array_api_strict, PyTorch or
JAX; from ``array_api_compat.array_namespace``, or the library itself where it conforms) and returns
``(problem, solve keywords)``. Its functions take the namespace from their inputs, so the same
problem runs on every library. ``tests/test_all_algorithms.py`` runs every registered algorithm on
every problem of ``PROBLEMS``; to *require* that an algorithm solves one, add its registered name to
that problem's ``must_solve``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import array_api_compat
import numpy as np

import steadysolve as ss

__all__ = ["MatrixProblem", "PROBLEMS", "H_MAX", "asarray", "cast", "h_map", "h_matrix", "h_equation",
           "h_equation_nonlinear", "h_reference", "laplace", "laplace_residual", "laplace_reference",
           "linear_contraction", "linear_reference", "mlp_cell", "tanh_mlp", "mlp_reference"]


@dataclass
class MatrixProblem:
    name: str
    make: Callable  # make(xp) -> (problem, solve keyword dict)
    reference: Optional[Callable]  # reference() -> NumPy solution in the user's layout; None without a root
    must_solve: set = field(default_factory=set)  # algorithm names that must reach Success
    atol: float = 1e-6  # tolerance of the comparison with the reference
    maxiters: int = 500
    refused_by: set = field(default_factory=set)  # algorithm names that must refuse it with a ValueError
    no_root: bool = False  # there is nothing to find: every algorithm must end with a failure code
    libraries: Optional[tuple] = None  # where the problem runs, None: everywhere (bfloat16 is PyTorch and JAX only)

    def __repr__(self) -> str:
        return self.name


def asarray(xp, a):
    """A float64 array of namespace ``xp`` from NumPy data."""
    return xp.asarray(np.asarray(a, dtype=np.float64))


def cast(xp, a, dtype: str):
    """An array of namespace ``xp`` in ``dtype`` ("float32", "float16", "bfloat16") from float64 NumPy data."""
    return xp.astype(asarray(xp, a), getattr(xp, dtype))


def _xp(x):
    return array_api_compat.array_namespace(x)


# -- linear contraction u = A u + b ---------------------------------------------------

@functools.lru_cache(None)
def _linear_data(n=20):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(n, n))
    A = 0.6 * A / np.linalg.norm(A, 2)
    b = rng.normal(size=n)
    return A, b


def linear_contraction(xp):
    A, b = _linear_data()
    prob = ss.FixedPointProblem(lambda u, p: p[0] @ u + p[1], asarray(xp, np.zeros(len(b))),
                                (asarray(xp, A), asarray(xp, b)))
    return prob, dict(abstol=1e-10, reltol=0.0)


def linear_reference():
    A, b = _linear_data()
    return np.linalg.solve(np.eye(len(b)) - A, b)


# -- Chandrasekhar H-equation ------------------------------------------------------------

H_MAX = 1.8477217179  # max_i H(mu_i) for c = 0.9


@functools.lru_cache(None)
def h_matrix(n=100, c=0.9):
    """The midpoint-rule kernel ``c / (2n) * mu_i / (mu_i + mu_j)`` of the H-equation."""
    mu = (np.arange(1, n + 1) - 0.5) / n
    return c / (2 * n) * mu[:, None] / (mu[:, None] + mu[None, :])


def h_map(u, M):
    """One application of the H-equation operator: H(u)_i = 1 / (1 - sum_j M_ij u_j)."""
    return 1.0 / (1.0 - M @ u)


def h_equation(xp, n=100, c=0.9):
    prob = ss.FixedPointProblem(h_map, asarray(xp, np.ones(n)), asarray(xp, h_matrix(n, c)))
    return prob, dict(abstol=1e-10, reltol=0.0)


def h_equation_nonlinear(xp, n=100, c=0.9):
    """The same equation as a root problem ``F(u) = H(u) - u``."""
    prob = ss.NonlinearProblem(lambda u, p: h_map(u, p) - u, asarray(xp, np.ones(n)), asarray(xp, h_matrix(n, c)))
    return prob, dict(abstol=1e-10, reltol=0.0)


@functools.lru_cache(None)
def h_reference(n=100, c=0.9):
    M = h_matrix(n, c)
    u = np.ones(n)
    for _ in range(5000):
        u_new = h_map(u, M)
        if np.max(np.abs(u_new - u)) < 1e-15:
            break
        u = u_new
    return u_new


# -- SciPy's 2-D nonlinear Laplace problem (scipy.optimize.root docstring) --------------

def laplace_residual(P, p):
    """``Laplacian(P) + sign * |c| * mean(cosh(P))**2`` on the unit square, Dirichlet BCs
    (P = 1 on the right edge x = 1, 0 elsewhere); ``p = (coef, n)`` with coef -10 for the
    ``root`` docstring variant and +5 for the large-scale tutorial one.
    """
    coef, n = p
    xp = _xp(P)
    h = 1.0 / (n - 1)
    zero_row = xp.zeros((1, n), dtype=P.dtype)
    one_row = xp.ones((1, n), dtype=P.dtype)
    zero_col = xp.zeros((n, 1), dtype=P.dtype)
    Pl = xp.concat([zero_row, P[:-1, :]], axis=0)  # P_left = 0 (x = 0 row)
    Pr = xp.concat([P[1:, :], one_row], axis=0)  # P_right = 1 (x = 1 row)
    Pd = xp.concat([zero_col, P[:, :-1]], axis=1)  # P_bottom = 0
    Pu = xp.concat([P[:, 1:], zero_col], axis=1)  # P_top = 0
    d2x = (Pr - 2 * P + Pl) / (h * h)
    d2y = (Pu - 2 * P + Pd) / (h * h)
    return d2x + d2y + coef * xp.mean(xp.cosh(P)) ** 2


def laplace(xp, n=75, coef=-10.0):
    prob = ss.NonlinearProblem(laplace_residual, asarray(xp, np.zeros((n, n))), (coef, n))
    return prob, dict(abstol=1e-6, reltol=0.0)


@functools.lru_cache(None)
def laplace_reference(n=75, coef=-10.0):
    from scipy.optimize import root

    res = root(lambda P: laplace_residual(P, (coef, n)), np.zeros((n, n)), method="krylov",
               options=dict(fatol=1e-10))
    assert res.success, res.message
    return res.x


# -- batched tanh-MLP contraction (a DEQ cell) -------------------------------------------

@functools.lru_cache(None)
def _mlp_data(batch=16, width=64):
    rng = np.random.default_rng(7)
    W = rng.normal(size=(width, width))
    W = 0.9 * W / np.linalg.norm(W, 2)
    U = rng.normal(size=(width, width)) / np.sqrt(width)
    x = rng.normal(size=(batch, width))
    # Give elements different input scales so that they converge at different rates.
    x = x * np.linspace(0.1, 3.0, batch)[:, None]
    return W, U, x


def mlp_cell(z, p):
    W, U, x = p
    return _xp(z).tanh(z @ W.T + x @ U.T)


def tanh_mlp(xp, batch=16, width=64):
    W, U, x = _mlp_data(batch, width)
    p = (asarray(xp, W), asarray(xp, U), asarray(xp, x))
    prob = ss.FixedPointProblem(mlp_cell, asarray(xp, np.zeros((batch, width))), p)
    return prob, dict(abstol=1e-9, reltol=0.0, batch_axis=0)


@functools.lru_cache(None)
def mlp_reference(batch=16, width=64):
    W, U, x = _mlp_data(batch, width)
    z = np.zeros((batch, width))
    for _ in range(3000):
        z_new = np.tanh(z @ W.T + x @ U.T)
        if np.max(np.abs(z_new - z)) < 1e-15:
            break
        z = z_new
    return z_new


# -- problems every algorithm must FAIL on, honestly --------------------------------------

def no_root_arctan(xp):
    """``arctan(u) + 2 = 0`` has no root; iterates run away to -inf with a bounded residual."""
    return ss.NonlinearProblem(lambda u, p: xp.atan(u) + 2.0, asarray(xp, np.zeros(3))), dict(abstol=1e-8, reltol=1e-6)


def no_root_shift(xp):
    """``g(u) = u + 1`` has no fixed point (the residual is 1 everywhere)."""
    return ss.FixedPointProblem(lambda u, p: u + 1.0, asarray(xp, np.zeros(2))), dict(abstol=1e-8, reltol=1e-6)


def no_root_drift(xp):
    """``du/dt = 1``: no steady state (u grows linearly while du/dt stays 1)."""
    return ss.SteadyStateProblem(lambda u, p, t: xp.ones_like(u), asarray(xp, np.zeros(3))), dict(abstol=1e-8,
                                                                                                  reltol=1e-6)


def nan_region(xp):
    """``g(u) = 0.5 u + 1`` with its fixed point 2 inside a region where g returns NaN (u > 1.5):
    NaN appears mid-solve, and no finite answer meets the tolerance."""

    def g(u, p):
        return xp.where(u > 1.5, xp.full_like(u, float("nan")), 0.5 * u + 1.0)

    return ss.FixedPointProblem(g, asarray(xp, np.zeros(3))), dict(abstol=1e-10, reltol=0.0)


def stiff_steady_state(xp):
    """``du/dt = -D (u - 1)`` with rates 1 and 1e3: stiff for an explicit integrator."""
    D = asarray(xp, np.array([1.0, 1e3]))
    return ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), asarray(xp, np.zeros(2)), D), dict(abstol=1e-8,
                                                                                                     reltol=0.0)


# -- no root, and a residual that flattens to a floor as the iterate runs away: Success would be a lie ---
# (the classes of the reliability audit: a floor as u -> -inf, loose tolerances, low precision, a
# residual that rounds to zero at a huge iterate; every algorithm, eager and jitted, batched)

def exp_floor(dtype="float64", floor=1e-4, **kw):
    """``exp(u) + floor = 0``: no root; ``F -> floor`` as ``u -> -inf`` while ``reltol * norm(u)`` grows."""
    def make(xp):
        return ss.NonlinearProblem(lambda u, p: xp.exp(u) + floor, cast(xp, np.zeros(2), dtype)), dict(kw)

    return make


def exp_floor_batch(xp):
    """Four elements with floors 1e-4 .. 1e-1 from different starts, one batch."""
    c = asarray(xp, np.array([1e-4, 1e-3, 1e-2, 1e-1])[:, None])
    u0 = asarray(xp, np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, 0.0], [0.0, 0.0]]))
    return ss.NonlinearProblem(lambda u, p: xp.exp(u) + p, u0, c), dict(batch_axis=0)


def atan_floor(c, reltol):
    """``atan(u) + c = 0``, ``c > pi / 2``: no root, floor ``c - pi / 2`` as ``u -> -inf``."""
    def make(xp):
        return ss.NonlinearProblem(lambda u, p: xp.atan(u) + c, asarray(xp, np.zeros(3))), dict(reltol=reltol)

    return make


def fixed_point_floor(xp):
    """``g(z) = z - exp(z) - 1e-4``: no fixed point, ``g(z) - z -> -1e-4`` as ``z -> -inf``."""
    return ss.FixedPointProblem(lambda z, p: z - xp.exp(z) - 1e-4, asarray(xp, np.zeros(2))), {}


def shift_float32(xp):
    """``g(z) = z + 1`` in float32: no fixed point, yet ``g(z) - z`` rounds to 0 once ``|z| > 1.7e7``."""
    return ss.FixedPointProblem(lambda z, p: z + 1.0, cast(xp, np.zeros(2), "float32")), {}


_EVERY = frozenset({"anderson", "fixed_point", "dynamic_ss", "newton_krylov", "auto", "broyden", "newton", "trust_region",
          "levenberg_marquardt"})

PROBLEMS = [
    MatrixProblem("linear_contraction", linear_contraction, linear_reference, must_solve=_EVERY),
    MatrixProblem("h_equation", h_equation, h_reference, must_solve=_EVERY),
    MatrixProblem("h_equation_root", h_equation_nonlinear, h_reference, must_solve=_EVERY),
    # Default Anderson (memory 5) stalls on this ill-conditioned problem; memory 10 is
    # tested in tests/test_core.py. Fixed-point iteration needs ~1e5 steps: honest MaxIters.
    MatrixProblem("laplace_75", laplace, laplace_reference, must_solve={"newton_krylov", "auto"}, atol=1e-5,
                  maxiters=400, refused_by={"newton", "trust_region", "levenberg_marquardt", "gauss_newton"}),
    MatrixProblem("tanh_mlp", tanh_mlp, mlp_reference, must_solve=_EVERY),
    MatrixProblem("stiff_steady_state", stiff_steady_state, lambda: np.ones(2),
                  must_solve={"newton_krylov", "auto", "newton", "trust_region", "levenberg_marquardt"}, maxiters=300),
    MatrixProblem("no_root_arctan", no_root_arctan, None, no_root=True, maxiters=300),
    MatrixProblem("no_root_shift", no_root_shift, None, no_root=True, maxiters=300),
    MatrixProblem("no_root_drift", no_root_drift, None, no_root=True, maxiters=300),
    MatrixProblem("nan_region", nan_region, None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor", exp_floor(), None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor_reltol_1e-6", exp_floor(reltol=1e-6), None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor_reltol_1e-2", exp_floor(reltol=1e-2), None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor_batch", exp_floor_batch, None, no_root=True, maxiters=300),
    MatrixProblem("atan_floor_reltol_1e-3", atan_floor(2.0, 1e-3), None, no_root=True, maxiters=300),
    MatrixProblem("atan_floor_reltol_1e-2", atan_floor(1.6, 1e-2), None, no_root=True, maxiters=300),
    MatrixProblem("fixed_point_floor", fixed_point_floor, None, no_root=True, maxiters=300),
    MatrixProblem("shift_float32", shift_float32, None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor_float32", exp_floor("float32", 1e-3), None, no_root=True, maxiters=300),
    MatrixProblem("exp_floor_float16", exp_floor("float16", 5e-2), None, no_root=True, maxiters=300,
                  libraries=("torch", "jax")),
    MatrixProblem("exp_floor_bfloat16", exp_floor("bfloat16", 0.5), None, no_root=True, maxiters=300,
                  libraries=("torch", "jax")),
]
