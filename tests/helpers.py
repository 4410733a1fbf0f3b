"""Shared test machinery: the four array backends and the honesty check of a solution.

The problems themselves live in ``benchmarks/problems/`` (the benchmarks use them too):
``benchmarks.problems.honesty`` holds the honesty matrix that every algorithm runs on
(tests/test_all_algorithms.py and its jitted half tests/test_all_algorithms_jax.py; the check of one
cell is ``check_on_problem`` below), ``benchmarks.problems.mgh`` the Moré–Garbow–Hillstrom set.
"""

from __future__ import annotations

from dataclasses import dataclass

import array_api_compat
import numpy as np
import pytest

import steadysolve as ss

BACKENDS = ("numpy", "array_api_strict", "torch", "jax")


def slow_on(*names, argname="bk"):
    """Run a test on every backend (the ``bk`` fixture, or a parameter ``argname`` taking backend names),
    with its cases on ``names`` marked ``slow``: they still run in the whole suite, not in the fast loop
    (``-m "not slow"``), where they would spend seconds compiling or stepping through the same code."""
    cases = [pytest.param(n, marks=pytest.mark.slow) if n in names else n for n in BACKENDS]
    return pytest.mark.parametrize(argname, cases, indirect=argname == "bk")


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


def check_on_problem(bk, tp, alg, solve):
    """One cell of the honesty matrix (``benchmarks.problems.honesty``): ``solve(prob, alg, maxiters, kw)``
    returns the solution of ``alg`` on problem ``tp`` built in ``bk``'s namespace; this checks what the
    matrix promises (a refusal, an honest ``Success``, the reference root, a failure code without a root)."""
    prob, kw = tp.make(bk.xp)
    if alg in tp.refused_by:  # e.g. dense Newton on a large system: a clear error before iterating
        with pytest.raises(ValueError, match="max_size"):
            ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
        return
    sol = solve(prob, alg, tp.maxiters, kw)
    if "abstol" not in kw and "reltol" not in kw:  # the tolerances the solve used: a given one binds, the other is 0
        abstol = reltol = float(bk.xp.finfo(prob.u0.dtype).eps) ** 0.8
    else:
        abstol, reltol = kw.get("abstol", 0.0), kw.get("reltol", 0.0)
    assert_honest(bk, prob, sol, abstol, reltol, batch_axis=kw.get("batch_axis"))
    if tp.no_root:  # nothing to find: a failure code, a finite best iterate, never Success
        codes = sol.retcodes if kw.get("batch_axis") is not None else [sol.retcode]
        assert all(rc is not ss.ReturnCode.Success for rc in codes), f"{alg} on {tp.name}: {sol!r} with u = {sol.u}"
        assert np.all(np.isfinite(bk.to_numpy(sol.u)))
    elif alg in tp.must_solve:
        assert sol.retcode is ss.ReturnCode.Success, f"{alg} on {tp.name}: {sol!r}"
        np.testing.assert_allclose(bk.to_numpy(sol.u), tp.reference(), atol=tp.atol, rtol=0)
    else:
        # Honest failure: a code from the documented set and a finite best iterate.
        assert isinstance(sol.retcode, ss.ReturnCode)
