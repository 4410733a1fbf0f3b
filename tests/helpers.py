"""Shared test machinery: the four array backends and the shared problem list.

Every algorithm of the package runs on every problem here (tests/test_all_algorithms.py).
A problem's functions are written once against the array API: they take the
namespace from their inputs, so the same problem runs on NumPy,
array_api_strict, PyTorch and JAX.

To add an algorithm to the honesty matrix nothing is needed: the matrix walks
``steadysolve.available()``. To *require* that it solves a problem, add its
registered name to that problem's ``must_solve``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import array_api_compat
import numpy as np

import steadysolve as ss

BACKENDS = ("numpy", "array_api_strict", "torch", "jax")


@dataclass(frozen=True)
class Backend:
    name: str

    @property
    def xp(self):
        if self.name == "numpy":
            return array_api_compat.array_namespace(np.zeros(1))
        if self.name == "array_api_strict":
            import array_api_strict

            return array_api_strict
        if self.name == "torch":
            import torch

            return array_api_compat.array_namespace(torch.zeros(1))
        if self.name == "cupy":
            import cupy

            return array_api_compat.array_namespace(cupy.zeros(1))
        import jax.numpy as jnp

        return jnp

    def asarray(self, a, dtype=None):
        """Convert a NumPy array (or nested data) to this backend, float64 by default."""
        a = np.asarray(a, dtype=np.float64 if dtype is None else dtype)
        if self.name == "numpy":
            return a
        if self.name == "array_api_strict":
            import array_api_strict

            return array_api_strict.asarray(a)
        if self.name == "torch":
            import torch

            return torch.as_tensor(a)
        if self.name == "cupy":
            import cupy

            return cupy.asarray(a)
        import jax.numpy as jnp

        return jnp.asarray(a)

    def to_numpy(self, x):
        if x is None:
            return None
        if self.name == "torch":
            x = x.detach().cpu()
            return (x.float() if x.dtype.itemsize < 4 else x).numpy()
        if self.name == "cupy":
            import cupy

            return cupy.asnumpy(x)
        if self.name == "array_api_strict":
            import array_api_strict

            return np.asarray(array_api_strict.asarray(x, copy=True)._array)
        return np.asarray(x)

    def __repr__(self) -> str:
        return self.name


def get_backend(name: str) -> Backend:
    return Backend(name)


def xp_of(x):
    return array_api_compat.array_namespace(x)


# ---------------------------------------------------------------------------
# Shared problems
# ---------------------------------------------------------------------------


@dataclass
class TestProblem:
    name: str
    make: Callable  # make(bk) -> (problem, solve keyword dict)
    reference: Callable  # reference() -> NumPy solution in the user's layout
    must_solve: set = field(default_factory=set)  # algorithm names that must reach Success
    atol: float = 1e-6  # tolerance of the comparison with the reference
    maxiters: int = 500
    refused_by: set = field(default_factory=set)  # algorithm names that must refuse it with a ValueError
    no_root: bool = False  # there is nothing to find: every algorithm must end with a failure code
    backends: tuple = BACKENDS  # where the problem runs (bfloat16 exists in PyTorch and JAX only)

    def __repr__(self) -> str:
        return self.name


# -- linear contraction u = A u + b ---------------------------------------------------

@functools.lru_cache(None)
def _linear_data(n=20):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(n, n))
    A = 0.6 * A / np.linalg.norm(A, 2)
    b = rng.normal(size=n)
    return A, b


def linear_contraction(bk):
    A, b = _linear_data()
    Ab, bb = bk.asarray(A), bk.asarray(b)
    prob = ss.FixedPointProblem(lambda u, p: p[0] @ u + p[1], bk.asarray(np.zeros(len(b))), (Ab, bb))
    return prob, dict(abstol=1e-10, reltol=0.0)


def linear_reference():
    A, b = _linear_data()
    return np.linalg.solve(np.eye(len(b)) - A, b)


# -- Chandrasekhar H-equation ------------------------------------------------------------

H_MAX = 1.8477217179


@functools.lru_cache(None)
def _h_matrix(n=100, c=0.9):
    mu = (np.arange(1, n + 1) - 0.5) / n
    return c / (2 * n) * mu[:, None] / (mu[:, None] + mu[None, :])


def h_map(u, M):
    """One application of the H-equation operator: H(u)_i = 1 / (1 - sum_j M_ij u_j)."""
    return 1.0 / (1.0 - M @ u)


def h_equation(bk, n=100, c=0.9):
    M = bk.asarray(_h_matrix(n, c))
    prob = ss.FixedPointProblem(h_map, bk.asarray(np.ones(n)), M)
    return prob, dict(abstol=1e-10, reltol=0.0)


def h_equation_nonlinear(bk, n=100, c=0.9):
    """The same equation as a root problem ``F(u) = H(u) - u``."""
    M = bk.asarray(_h_matrix(n, c))
    prob = ss.NonlinearProblem(lambda u, p: h_map(u, p) - u, bk.asarray(np.ones(n)), M)
    return prob, dict(abstol=1e-10, reltol=0.0)


@functools.lru_cache(None)
def h_reference(n=100, c=0.9):
    M = _h_matrix(n, c)
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
    xp = xp_of(P)
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


def laplace(bk, n=75, coef=-10.0):
    prob = ss.NonlinearProblem(laplace_residual, bk.asarray(np.zeros((n, n))), (coef, n))
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
    xp = xp_of(z)
    return xp.tanh(z @ W.T + x @ U.T)


def tanh_mlp(bk, batch=16, width=64):
    W, U, x = _mlp_data(batch, width)
    p = (bk.asarray(W), bk.asarray(U), bk.asarray(x))
    prob = ss.FixedPointProblem(mlp_cell, bk.asarray(np.zeros((batch, width))), p)
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

def no_root_arctan(bk):
    """``arctan(u) + 2 = 0`` has no root; iterates run away to -inf with a bounded residual."""
    xp = bk.xp
    return ss.NonlinearProblem(lambda u, p: xp.atan(u) + 2.0, bk.asarray(np.zeros(3))), dict(abstol=1e-8, reltol=1e-6)


def no_root_shift(bk):
    """``g(u) = u + 1`` has no fixed point (the residual is 1 everywhere)."""
    return ss.FixedPointProblem(lambda u, p: u + 1.0, bk.asarray(np.zeros(2))), dict(abstol=1e-8, reltol=1e-6)


def no_root_drift(bk):
    """``du/dt = 1``: no steady state (u grows linearly while du/dt stays 1)."""
    xp = bk.xp
    return ss.SteadyStateProblem(lambda u, p, t: xp.ones_like(u), bk.asarray(np.zeros(3))), dict(abstol=1e-8,
                                                                                                 reltol=1e-6)


def nan_region(bk):
    """``g(u) = 0.5 u + 1`` with its fixed point 2 inside a region where g returns NaN (u > 1.5):
    NaN appears mid-solve, and no finite answer meets the tolerance."""
    xp = bk.xp

    def g(u, p):
        return xp.where(u > 1.5, xp.full_like(u, float("nan")), 0.5 * u + 1.0)

    return ss.FixedPointProblem(g, bk.asarray(np.zeros(3))), dict(abstol=1e-10, reltol=0.0)


def stiff_steady_state(bk):
    """``du/dt = -D (u - 1)`` with rates 1 and 1e3: stiff for an explicit integrator."""
    D = bk.asarray(np.array([1.0, 1e3]))
    return ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), bk.asarray(np.zeros(2)), D), dict(abstol=1e-8,
                                                                                                    reltol=0.0)


# -- no root, and a residual that flattens to a floor as the iterate runs away: Success would be a lie ---
# (the classes of the reliability audit: a floor as u -> -inf, loose tolerances, low precision, a
# residual that rounds to zero at a huge iterate; every algorithm, eager and jitted, batched)

def cast(bk, x, dtype: str):
    """A backend array in ``dtype`` ("float32", "float16", "bfloat16"), from a float64 NumPy array."""
    x = bk.asarray(x)
    if bk.name == "torch":
        import torch

        return x.to(getattr(torch, dtype))
    if bk.name == "jax":
        import jax.numpy as jnp

        return x.astype(getattr(jnp, dtype))
    return bk.xp.astype(x, getattr(bk.xp, dtype))


def exp_floor(dtype="float64", floor=1e-4, **kw):
    """``exp(u) + floor = 0``: no root; ``F -> floor`` as ``u -> -inf`` while ``reltol * norm(u)`` grows."""
    def make(bk):
        xp = bk.xp
        u0 = cast(bk, np.zeros(2), dtype)
        return ss.NonlinearProblem(lambda u, p: xp.exp(u) + floor, u0), dict(kw)

    return make


def exp_floor_batch(bk):
    """Four elements with floors 1e-4 .. 1e-1 from different starts, one batch."""
    xp = bk.xp
    c = bk.asarray(np.array([1e-4, 1e-3, 1e-2, 1e-1])[:, None])
    u0 = bk.asarray(np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, 0.0], [0.0, 0.0]]))
    return ss.NonlinearProblem(lambda u, p: xp.exp(u) + p, u0, c), dict(batch_axis=0)


def atan_floor(c, reltol):
    """``atan(u) + c = 0``, ``c > pi / 2``: no root, floor ``c - pi / 2`` as ``u -> -inf``."""
    def make(bk):
        xp = bk.xp
        return ss.NonlinearProblem(lambda u, p: xp.atan(u) + c, bk.asarray(np.zeros(3))), dict(reltol=reltol)

    return make


def fixed_point_floor(bk):
    """``g(z) = z - exp(z) - 1e-4``: no fixed point, ``g(z) - z -> -1e-4`` as ``z -> -inf``."""
    xp = bk.xp
    return ss.FixedPointProblem(lambda z, p: z - xp.exp(z) - 1e-4, bk.asarray(np.zeros(2))), {}


def shift_float32(bk):
    """``g(z) = z + 1`` in float32: no fixed point, yet ``g(z) - z`` rounds to 0 once ``|z| > 1.7e7``."""
    return ss.FixedPointProblem(lambda z, p: z + 1.0, cast(bk, np.zeros(2), "float32")), {}


PROBLEMS = [
    TestProblem("linear_contraction", linear_contraction, linear_reference,
                must_solve={"anderson", "fixed_point", "dynamic_ss", "newton_krylov", "auto", "broyden", "newton", "trust_region", "levenberg_marquardt"}),
    TestProblem("h_equation", h_equation, h_reference, must_solve={"anderson", "fixed_point", "dynamic_ss",
                                                                   "newton_krylov", "auto", "broyden", "newton", "trust_region", "levenberg_marquardt"}),
    TestProblem("h_equation_root", h_equation_nonlinear, h_reference, must_solve={"anderson", "fixed_point", "dynamic_ss",
                                                                                 "newton_krylov", "auto", "broyden", "newton", "trust_region", "levenberg_marquardt"}),
    # Default Anderson (memory 5) stalls on this ill-conditioned problem; memory 10 is
    # tested in tests/test_core.py. Fixed-point iteration needs ~1e5 steps: honest MaxIters.
    TestProblem("laplace_75", laplace, laplace_reference, must_solve={"newton_krylov", "auto"}, atol=1e-5,
                maxiters=400, refused_by={"newton", "trust_region", "levenberg_marquardt"}),
    TestProblem("tanh_mlp", tanh_mlp, mlp_reference, must_solve={"anderson", "fixed_point", "dynamic_ss",
                                                                 "newton_krylov", "auto", "broyden", "newton", "trust_region", "levenberg_marquardt"}),
    TestProblem("stiff_steady_state", stiff_steady_state, lambda: np.ones(2),
                must_solve={"newton_krylov", "auto", "newton", "trust_region", "levenberg_marquardt"}, maxiters=300),
    TestProblem("no_root_arctan", no_root_arctan, None, no_root=True, maxiters=300),
    TestProblem("no_root_shift", no_root_shift, None, no_root=True, maxiters=300),
    TestProblem("no_root_drift", no_root_drift, None, no_root=True, maxiters=300),
    TestProblem("nan_region", nan_region, None, no_root=True, maxiters=300),
    TestProblem("exp_floor", exp_floor(), None, no_root=True, maxiters=300),
    TestProblem("exp_floor_reltol_1e-6", exp_floor(reltol=1e-6), None, no_root=True, maxiters=300),
    TestProblem("exp_floor_reltol_1e-2", exp_floor(reltol=1e-2), None, no_root=True, maxiters=300),
    TestProblem("exp_floor_batch", exp_floor_batch, None, no_root=True, maxiters=300),
    TestProblem("atan_floor_reltol_1e-3", atan_floor(2.0, 1e-3), None, no_root=True, maxiters=300),
    TestProblem("atan_floor_reltol_1e-2", atan_floor(1.6, 1e-2), None, no_root=True, maxiters=300),
    TestProblem("fixed_point_floor", fixed_point_floor, None, no_root=True, maxiters=300),
    TestProblem("shift_float32", shift_float32, None, no_root=True, maxiters=300),
    TestProblem("exp_floor_float32", exp_floor("float32", 1e-3), None, no_root=True, maxiters=300),
    TestProblem("exp_floor_float16", exp_floor("float16", 5e-2), None, no_root=True, maxiters=300,
                backends=("torch", "jax")),
    TestProblem("exp_floor_bfloat16", exp_floor("bfloat16", 0.5), None, no_root=True, maxiters=300,
                backends=("torch", "jax")),
]


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def np_norm(x, norm="max", batch_axis=None):
    """Per-element norm in NumPy, independent of the package's termination code."""
    x = np.asarray(x)
    if batch_axis is None:
        x = x.reshape(1, -1)
    else:
        x = np.moveaxis(x, batch_axis, 0).reshape(x.shape[batch_axis], -1)
    if norm in ("max", "inf"):
        return np.max(np.abs(x), axis=1)
    if norm == "l2":
        return np.sqrt(np.sum(x * x, axis=1))
    return np.sqrt(np.mean(x * x, axis=1))


def _terms_norm(bk, prob, u, norm, batch_axis):
    """``norm(J_F(u) u)`` per element by a central difference in NumPy-converted values (independent of
    the package's own derivative code)."""
    h = 1e-6
    fp = bk.to_numpy(prob.residual(bk.asarray(bk.to_numpy(u) * (1 + h), dtype=bk.to_numpy(u).dtype), prob.p))
    fm = bk.to_numpy(prob.residual(bk.asarray(bk.to_numpy(u) * (1 - h), dtype=bk.to_numpy(u).dtype), prob.p))
    return np_norm((fp - fm) / (2 * h), norm, batch_axis)


def assert_honest(bk, prob, sol, abstol, reltol, norm="max", batch_axis=None):
    """A ``Success`` must mean the residual, recomputed here, is within tolerance (per element when
    batched; the package's definition, docs/concepts.md: ``abstol``, or ``reltol`` times ``norm(u)``
    capped at 100 times the start's scale for a fixed-point map, times the size of ``F``'s terms
    ``norm(J_F(u) u)`` otherwise), and the solution must hold no NaN."""
    u = bk.to_numpy(sol.u)
    assert np.all(np.isfinite(u)), f"{sol!r}: non-finite values in sol.u"
    resid = bk.to_numpy(prob.residual(sol.u, prob.p))
    fn = np_norm(resid, norm, batch_axis)
    un = np_norm(u, norm, batch_axis)
    if prob.kind == "fixed_point":
        u0 = bk.to_numpy(prob.u0)
        g0 = bk.to_numpy(prob.f(prob.u0, prob.p))
        scale0 = np.maximum(np.maximum(np_norm(u0, norm, batch_axis), np_norm(g0, norm, batch_axis)), 1.0)
        rel_scale = np.minimum(un, 100 * scale0)
    else:
        rel_scale = _terms_norm(bk, prob, sol.u, norm, batch_axis) if reltol > 0 else 0 * fn
    ok = (fn <= abstol * (1 + 1e-8) + 1e-300) | (fn <= reltol * rel_scale * (1 + 1e-4))
    codes = sol.retcodes if batch_axis is not None else [sol.retcode]
    for i, rc in enumerate(codes):
        if rc is ss.ReturnCode.Success:
            assert ok[i], (f"{sol!r} element {i}: Success with residual norm {fn[i]:.3e} "
                           f"> max(abstol={abstol}, reltol*scale={reltol * rel_scale[i]:.3e})")
    # sol.resid is the residual at sol.u
    np.testing.assert_allclose(bk.to_numpy(sol.resid), resid, rtol=1e-6, atol=1e-9 * (1 + np.max(np.abs(resid))))
