"""``solve(prob, alg)``: validate, build the solve context, run a driver, build the Solution."""

from __future__ import annotations

import difflib
import math
from typing import Any

from . import backend
from .algorithms.base import Context
from .loop import run
from .problems import AbstractProblem, check_output
from .registry import resolve
from .solution import ConvergenceError, Solution, Stats
from .termination import default_tolerance, get_norm

__all__ = ["solve"]

_KEYWORDS = ("abstol", "reltol", "maxiters", "norm", "batch_axis", "throw", "store_trace", "callback")
# What users of SciPy, torchdeq, jaxopt or optimistix type for our keywords.
_ALIASES = {
    "tol": "abstol' or 'reltol", "tolerance": "abstol' or 'reltol", "atol": "abstol", "rtol": "reltol",
    "f_tol": "abstol", "ftol": "abstol", "f_rtol": "reltol", "xtol": "abstol' or 'reltol",
    "maxiter": "maxiters", "max_iter": "maxiters", "max_iters": "maxiters", "max_steps": "maxiters",
    "maxfev": "maxiters", "full_output": "store_trace",
}


def _check_tol(name, value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"solve: {name} must be a non-negative number, got {type(value).__name__}")
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"solve: {name} must be a finite number >= 0, got {value}")


class _Layout:
    """Maps user arrays (any shape, batch axis anywhere) to the solvers' ``(B, n)`` layout and back."""

    def __init__(self, xp, shape, batch_axis):
        self.xp = xp
        self.shape = tuple(shape)
        self.axis = batch_axis
        if batch_axis is None:
            self.batch = 1
            self.inner = self.shape
        else:
            self.batch = self.shape[batch_axis]
            self.inner = self.shape[:batch_axis] + self.shape[batch_axis + 1:]
        self.n = math.prod(self.inner)

    def to_solver(self, x):
        xp = self.xp
        if self.axis not in (None, 0):
            x = xp.moveaxis(x, self.axis, 0)
        return xp.reshape(x, (self.batch, self.n))

    def to_user(self, x):
        xp = self.xp
        if self.axis is None:
            return xp.reshape(x, self.shape)
        x = xp.reshape(x, (self.batch,) + self.inner)
        if self.axis != 0:
            x = xp.moveaxis(x, 0, self.axis)
        return x


def _fd_jvp(xp, F, norm_l2):
    """Forward-difference J_F(u) v with step ``h = sqrt(eps) * max(||u||, 1) / ||v||`` per element."""

    def jvp(u, v, fu):
        eps = float(xp.finfo(u.dtype).eps) ** 0.5
        un = norm_l2(u)
        vn = norm_l2(v)
        one = xp.ones_like(un)
        h = eps * xp.maximum(un, one) / xp.where(vn > 0, vn, one)
        h = xp.reshape(h, (h.shape[0], 1))
        return (F(u + h * v) - fu) / h

    return jvp


def build_context(prob, u0, layout: _Layout, xp, fu0_user, abstol, reltol, norm, traced=False) -> Context:
    p = prob.p
    to_s, to_u = layout.to_solver, layout.to_user

    def F(u):
        return to_s(prob.residual(to_u(u), p))

    G = None
    if prob.kind == "fixed_point":
        def G(u):  # noqa: F811 - the fixed-point map in solver layout
            return to_s(prob.fixed_point_map(to_u(u), p))

    def l2(x):
        return xp.sqrt(xp.sum(x * x, axis=1))

    if prob.jvp is not None:
        def jvp(u, v, fu):
            return to_s(prob.residual_jvp(to_u(u), to_u(v), p))
        jvp_is_fd = False
    else:
        jvp = _fd_jvp(xp, F, l2)
        jvp_is_fd = True

    vjp = None
    if prob.vjp is not None:
        def vjp(u, w):
            return to_s(prob.residual_vjp(to_u(u), to_u(w), p))

    jac = None
    if prob.jac is not None:
        def jac(u):
            J = prob.residual_jac(to_u(u), p)
            return xp.reshape(J, (layout.batch, layout.n, layout.n))

    def vector_field(u, t):
        return to_s(prob.vector_field(to_u(u), p, t))

    return Context(
        xp=xp, dtype=u0.dtype, device=backend.device_of(u0), batch=layout.batch, n=layout.n,
        F=F, G=G, jvp=jvp, jvp_is_fd=jvp_is_fd, vjp=vjp, jac=jac, vector_field=vector_field,
        norm=lambda x: norm(xp, x), abstol=abstol, reltol=reltol, fu0=to_s(fu0_user), p=p, kind=prob.kind,
        traced=traced,
    )


def solve(prob, alg=None, **kwargs) -> Solution:
    """Solve a steady-state / nonlinear / fixed-point problem.

    Parameters
    ----------
    prob : NonlinearProblem, SteadyStateProblem or FixedPointProblem.
    alg : an algorithm instance (``Anderson(memory=5)``) or a registered name
        (``"anderson"``, ``"fixed_point"``, ...). ``None`` means ``Anderson()``.
    abstol, reltol : success when ``norm(resid) <= abstol`` or
        ``norm(resid) <= reltol * norm(u)`` (per batch element). Default
        ``eps ** 0.8`` of the dtype.
    maxiters : iteration cap (default 1000).
    norm : ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable(x2d) -> per-row norms``.
    batch_axis : axis of ``u0`` that indexes independent problems; each element gets
        its own convergence test, is frozen once converged, and has its own counts.
    throw : raise :class:`ConvergenceError` instead of returning a failed Solution.
    store_trace : keep the residual norm of every iteration in ``sol.trace``.
    callback : ``callback(niter, u, resid_norm)`` after every iteration (eager only).
    """
    unknown = [k for k in kwargs if k not in _KEYWORDS]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, _KEYWORDS, n=1, cutoff=0.75)
        alias = _ALIASES.get(k) or (close[0] if close else None)
        hint = f" (did you mean '{alias}'?)" if alias else ""
        raise TypeError(f"solve() got an unexpected keyword argument {k!r}{hint}; valid keywords: {', '.join(_KEYWORDS)}")
    abstol = kwargs.get("abstol")
    reltol = kwargs.get("reltol")
    maxiters = kwargs.get("maxiters", 1000)
    batch_axis = kwargs.get("batch_axis")
    throw = kwargs.get("throw", False)
    store_trace = kwargs.get("store_trace", False)
    callback = kwargs.get("callback")

    if not isinstance(prob, AbstractProblem):
        raise TypeError(f"solve: prob must be a NonlinearProblem, SteadyStateProblem or FixedPointProblem, "
                        f"got {type(prob).__name__}")
    alg = resolve("anderson" if alg is None else alg)
    _check_tol("abstol", abstol)
    _check_tol("reltol", reltol)
    if isinstance(maxiters, bool) or not isinstance(maxiters, int):
        raise TypeError(f"solve: maxiters must be an int, got {type(maxiters).__name__}")
    if maxiters < 1:
        raise ValueError(f"solve: maxiters must be >= 1, got {maxiters}")
    norm = get_norm(kwargs.get("norm", "max"))
    if callback is not None and not callable(callback):
        raise TypeError(f"solve: callback must be callable, got {type(callback).__name__}")

    u0 = prob.u0
    xp = backend.namespace(("u0", u0), ("p", prob.p))
    ndim = len(u0.shape)
    if batch_axis is not None:
        if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
            raise TypeError(f"solve: batch_axis must be an int or None, got {type(batch_axis).__name__}")
        if not -ndim <= batch_axis < ndim:
            raise ValueError(f"solve: batch_axis={batch_axis} is out of range for u0 with shape {tuple(u0.shape)}")
        batch_axis %= ndim
        if u0.shape[batch_axis] == 0:
            raise ValueError("solve: the batch axis of u0 is empty")
    layout = _Layout(xp, u0.shape, batch_axis)

    fname = f"{prob._fname}(u, p{', t' if prob.kind == 'steady_state' else ''})"
    if prob.kind == "fixed_point":  # check g itself: g(u) - u could broadcast a wrong shape away
        g0 = prob.fixed_point_map(u0, prob.p)
        check_output(fname, g0, u0, xp)
        fu0 = g0 - u0
    else:
        fu0 = prob.residual(u0, prob.p)
        check_output(fname, fu0, u0, xp)

    use_jax = backend.is_jax(xp) and (
        any(backend.is_traced(x) for x in backend.tree_leaves((u0, prob.p))) or backend.is_traced(fu0))
    if use_jax and callback is not None:
        raise ValueError("solve: callback is not supported inside jax.jit / vmap / grad (the loop is a "
                         "lax.while_loop); drop the callback or call solve outside the transformation")

    dt = u0.dtype
    abstol = default_tolerance(xp, dt) if abstol is None else float(abstol)
    reltol = default_tolerance(xp, dt) if reltol is None else float(reltol)
    ctx = build_context(prob, u0, layout, xp, fu0, abstol, reltol, norm, traced=use_jax)
    res = run(alg, prob, ctx, layout.to_solver(u0), maxiters=maxiters, store_trace=store_trace,
              callback=callback, use_jax=use_jax, to_user=layout.to_user)

    st = res.state
    batched = batch_axis is not None
    stats = Stats(nf=_num(st.nf), njvp=_num(getattr(st, "njvp", 0)), nvjp=_num(getattr(st, "nvjp", 0)),
                  niter=_num(res.niter), niter_per_element=res.niter_el if batched else None,
                  extra={k: _num(v) for k, v in alg.extra_stats(st).items()})
    trace = res.trace
    if trace is not None and not batched:
        trace = trace[:, 0]
    sol = Solution(layout.to_user(res.u), layout.to_user(res.fu), res.codes, stats, prob, alg,
                   trace=trace, batched=batched)
    if throw and not use_jax and not sol.successful:
        raise ConvergenceError(sol)
    if throw and use_jax:
        sol = _jax_throw(sol)
    return sol


def _num(x: Any):
    """Counters as Python ints when concrete, arrays when traced."""
    if isinstance(x, int) or backend.is_traced(x):
        return x
    try:
        if hasattr(x, "dtype") and "float" in str(x.dtype):  # e.g. DynamicSS's final time t
            return float(x)
        return int(x)
    except (TypeError, ValueError):
        return x


def _jax_throw(sol):
    """``throw=True`` under JAX tracing: a runtime error through ``equinox.error_if`` when available."""
    try:
        import equinox as eqx
    except ImportError as e:  # pragma: no cover - equinox is part of the jax extra
        raise ValueError("solve(throw=True) inside jax.jit needs equinox (pip install equinox)") from e
    import jax.numpy as jnp

    sol.u = eqx.error_if(sol.u, jnp.any(sol.retcode_array != 0),
                         "steadysolve: the solve did not converge (see the return code)")
    return sol
