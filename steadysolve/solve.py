"""``solve(prob, alg)``: validate, build the solve context, run a driver, build the Solution."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import _backend as backend
from ._engine import trace as _trace
from .algorithms.auto import Auto
from .algorithms.base import Polyalgorithm
from ._engine.chain import run_chain, summary
from ._checks import check_batch_axis, check_bool, check_callable, check_int, check_tol, reject_unknown
from ._engine.context import build_context, fname_of, narrower, residual_layout
from ._backend.layout import Layout
from .interval import IntervalNonlinearProblem
from ._engine.bracket import solve_interval
from ._engine.driver import run
from ._small.choose import decide_sparse, small_twin
from .problems import AbstractProblem, as_output, check_least_squares_output, check_output, with_user_errstate
from .registry import resolve
from .retcodes import SUCCESS_CODES, ReturnCode
from .algorithms._bounds import BOUND_METHODS
from .solution import ConvergenceError, Solution, Stats, register_jax_pytrees
from .termination import default_tolerance, get_norm, resolve_tolerances

if TYPE_CHECKING:
    from typing_extensions import Never  # typing.Never from Python 3.11

__all__ = ["solve", "build_context"]

_DEFAULT = Auto()  # the default polyalgorithm (stateless, shared)
_LOG = logging.getLogger("steadysolve")

_KEYWORDS = ("abstol", "reltol", "maxiters", "norm", "batch_axis", "throw", "store_trace", "callback", "verbose")
# What users of SciPy, torchdeq, jaxopt or optimistix type for our keywords.
_ALIASES = {
    "tol": "abstol' or 'reltol", "tolerance": "abstol' or 'reltol", "atol": "abstol", "rtol": "reltol",
    "f_tol": "abstol", "ftol": "abstol", "f_rtol": "reltol", "xtol": "abstol' or 'reltol",
    "maxiter": "maxiters", "max_iter": "maxiters", "max_iters": "maxiters", "max_steps": "maxiters",
    "maxfev": "maxiters", "full_output": "store_trace", "method": "alg", "solver": "alg",
    "show_trace": "verbose", "disp": "verbose",
}


def _check_norm(norm, xp, rows, batch):
    """A user norm must map ``(batch, n)`` rows to ``(batch,)`` norms: checked on the first call."""
    out = norm(xp, rows)
    if tuple(getattr(out, "shape", ("?",))) != (batch,):
        got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"solve: the norm callable must map a (batch, n) array to its per-row norms of shape "
                         f"({batch},); it returned {got} for an input of shape {tuple(rows.shape)}")


_GRAD_HINT = ("steadysolve.solve does not differentiate through the solve (it runs under torch.no_grad() and "
              "returns a detached solution): inputs that require grad get no gradient from it. For gradients "
              "use steadysolve.adapters.torch.fixed_point / DEQ (implicit differentiation).")


def solve(prob: Union[AbstractProblem, IntervalNonlinearProblem], alg: Any = None, *, abstol: Optional[float] = None,
          reltol: Optional[float] = None, maxiters: int = 1000, norm: Union[str, Callable] = "max",
          batch_axis: Optional[int] = None, throw: bool = False, store_trace: bool = False,
          callback: Optional[Callable] = None, verbose: bool = False, **unknown: Never) -> Solution:
    """Solve a steady-state / nonlinear / fixed-point problem.

    Parameters
    ----------
    prob : NonlinearProblem, SteadyStateProblem, FixedPointProblem, IntervalNonlinearProblem or NonlinearLeastSquaresProblem
        What to solve: ``f(u, p) = 0``, ``du/dt = f(u, p, t) = 0`` or ``g(u, p) = u``, from ``u0``;
        or scalar roots on arrays of brackets ``[lo, hi]`` (an IntervalNonlinearProblem: ``alg`` is a
        bracketing method, ``"itp"`` by default, and ``abstol`` / ``reltol`` bound the bracket's width;
        see ``docs/bracketing.md``); or the minimiser of ``0.5 ||f(u, p)||^2`` with ``m >= n`` residuals
        (a NonlinearLeastSquaresProblem: ``LevenbergMarquardt`` by default, also ``GaussNewton`` and
        ``TrustRegion``; ``Success`` at a zero residual, ``LeastSquaresMinimum`` at a nonzero minimum;
        measured in the 2-norm; see ``docs/least_squares.md``).
    alg
        An algorithm instance (``Anderson(memory=5)``) or a registered name
        (``"anderson"``, ``"fixed_point"``, ...). ``None`` (or ``"auto"``) means the default
        polyalgorithm ``Auto``: a chain picked by problem kind and size (Anderson first for a
        FixedPointProblem; Newton / Newton-Krylov, then trust region, then Levenberg-Marquardt),
        each attempt restarting from the best iterate so far; ``sol.alg`` is the algorithm that
        produced the answer and ``sol.stats.attempts`` the cost of every attempt.
    abstol
        Success when ``norm(resid) <= abstol``, or ``norm(resid) <= reltol * scale`` with a scale
        that cannot run away with the iterate (per batch element; see the Concepts page): for a
        FixedPointProblem ``norm(u)``, capped at 100 times its start's scale; otherwise the size of
        ``f``'s terms at ``u``. Default ``eps ** 0.8`` of the dtype; when only one of ``abstol`` /
        ``reltol`` is given, the other is 0 (a tolerance you set binds).
    reltol
        The relative part of the test above (same default and rule).
    maxiters
        Iteration cap (default 1000): the total over the attempts of the default ``Auto``.
    norm
        ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable(x2d) -> per-row norms``. A problem with
        bounds, like a least-squares problem, is measured in the 2-norm (the default ``"max"`` means ``"l2"``).
    batch_axis
        Axis of ``u0`` that indexes independent problems; each element gets
        its own convergence test, is frozen once converged, and has its own counts.
    throw
        Raise ``ConvergenceError`` instead of returning a failed Solution.
    store_trace
        Keep the residual norm of every iteration in ``sol.trace``.
    callback
        ``callback(niter, u, resid_norm)`` after every iteration (eager only).
    verbose
        Print one line per iteration while solving: the iteration, the attempt and its algorithm,
        the largest residual norm and the largest change of ``u``; eagerly through the callback
        machinery, under ``jax.jit`` with ``jax.debug.print``. See the Diagnostics page.

    Returns
    -------
    Solution
        ``u`` (the best iterate), ``resid``, ``retcode``, ``stats``, ...

    Raises
    ------
    TypeError, ValueError
        Bad input, before any iteration: an unknown keyword (with our spelling of SciPy's or
        torchdeq's), an unknown algorithm name, invalid options, ``f`` returning the wrong
        shape or dtype, mixed array libraries.
    ConvergenceError
        With ``throw=True``, when the solve does not succeed.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: u - p * np.cos(u), np.zeros(2), np.array([0.5, 1.0]))
    >>> sol = ss.solve(prob, "newton_krylov", abstol=1e-10)
    >>> sol.retcode, np.round(sol.u, 6)
    (<ReturnCode.Success: ...>, array([0.450184, 0.739085]))
    """
    reject_unknown("solve()", unknown, _KEYWORDS, _ALIASES)
    if isinstance(prob, IntervalNonlinearProblem):  # scalar roots on arrays of brackets: _engine.bracket
        sol = solve_interval(prob, alg, abstol, reltol, maxiters, norm=norm, batch_axis=batch_axis,
                             store_trace=store_trace, callback=callback, verbose=verbose)
        return _thrown(sol, check_bool("solve", "throw", throw))
    if not isinstance(prob, AbstractProblem):
        raise TypeError(f"solve: prob must be a NonlinearProblem, SteadyStateProblem, FixedPointProblem or "
                        f"IntervalNonlinearProblem, got {type(prob).__name__}")
    alg = _DEFAULT if alg is None else resolve(alg)
    if prob.bounded:
        _check_honours_bounds(alg)
    if prob.kind == "least_squares":
        _check_least_squares(alg)
    abstol = check_tol("solve", "abstol", abstol)
    reltol = check_tol("solve", "reltol", reltol)
    maxiters = check_int("solve", "maxiters", maxiters, 1)
    if isinstance(prob, AbstractProblem) and prob.kind == "least_squares":
        norm = _least_squares_norm(norm)
    elif prob.bounded and norm == "max":  # the methods minimise ||F||_2 over the box: judged (and the best
        norm = "l2"  # iterate chosen) in that norm, or a minimum on a bound would tie with worse iterates
    norm = get_norm(norm)
    throw = check_bool("solve", "throw", throw)
    if not isinstance(store_trace, bool):
        store_trace = check_int("solve", "store_trace (True, False or a row cap)", store_trace, 2)
    check_callable("solve", "callback", callback, allow_none=True)
    verbose = check_bool("solve", "verbose", verbose)

    u0 = prob.u0
    xp = backend.namespace(("u0", u0), ("p", prob.p))
    batch_axis = check_batch_axis("solve", batch_axis, u0.shape)
    layout = Layout(xp, u0.shape, batch_axis)
    if backend.is_torch(xp) and backend.requires_grad((u0, prob.p)):
        warnings.warn(_GRAD_HINT, UserWarning, stacklevel=2)
    printer = _trace.Printer(xp) if verbose else None
    with backend.no_grad(xp), _trace.printing(printer):
        return _solve(prob, alg, xp, layout, abstol, reltol, maxiters, norm, batch_axis, throw, store_trace,
                      callback, printer)


def _solve(prob, alg, xp, layout, abstol, reltol, maxiters, norm, batch_axis, throw, store_trace, callback,
           printer=None):
    u0 = prob.u0
    fname = fname_of(prob)
    if prob.kind == "fixed_point":  # check g itself: g(u) - u could broadcast a wrong shape away
        g0 = as_output(prob.fixed_point_map(u0, prob.p), u0)
        check_output(fname, g0, u0, xp)
        fu0 = g0 - u0
    elif prob.kind == "least_squares":  # m >= n residuals per element, the batch on the same axis
        fu0 = as_output(prob.residual(u0, prob.p), u0)
        check_least_squares_output(fname, fu0, u0, batch_axis)
    else:
        fu0 = as_output(prob.residual(u0, prob.p), u0)
        check_output(fname, fu0, u0, xp)
    res_layout = residual_layout(prob, xp, fu0, layout) or layout
    if getattr(norm, "user", False):
        _check_norm(norm, xp, res_layout.to_rows(fu0), layout.batch)

    use_jax = backend.is_jax(xp) and (
        any(backend.is_traced(x) for x in backend.tree_leaves((u0, prob.p))) or backend.is_traced(fu0))
    if use_jax and callback is not None:
        raise ValueError("solve: callback is not supported inside jax.jit / vmap / grad (the loop is a "
                         "lax.while_loop); drop the callback or call solve outside the transformation")
    if backend.is_jax(xp):
        register_jax_pytrees()

    user_prob = prob
    if not use_jax:  # the user's functions keep the caller's NumPy error handling inside ``quiet_host``
        prob, callback = with_user_errstate(prob), backend.keep_errstate(callback)
    abstol, reltol = resolve_tolerances(abstol, reltol, default_tolerance(xp, u0.dtype))
    ctx = build_context(prob, u0, layout, xp, fu0, abstol, reltol, norm, traced=use_jax)
    batched = batch_axis is not None
    done = [0]  # iterations of the attempts before (a chain's callback counts on)
    ran_by: dict = {}  # id(result) -> the algorithm (or twin) that produced it

    narrow = narrower(prob, xp, layout, norm) if batched else None
    rows0 = layout.to_rows(u0)

    def drive(a, c, rows, cap=maxiters, left=None, scales=None):  # a chain's attempt: its cap, the budget left
        cb = callback if callback is None or not done[0] else (lambda it, u, fn: callback(done[0] + it, u, fn))
        if printer is not None:  # verbose=True: the table's lines, then the user's callback
            cb = printer.attempt_callback(a, None if use_jax else layout.from_rows(rows), use_jax, done[0], cb)
        decide_sparse(a, c, rows)
        ran = small_twin(a, c)
        r = run(ran, prob, c, rows, maxiters=cap, store_trace=store_trace, callback=cb, use_jax=use_jax,
                to_user=layout.from_rows, narrow=narrow, scales=scales, limit=left if use_jax else None)
        if not use_jax:
            done[0] += r.niter
        ran_by[id(r)] = ran  # its state's algorithm (a solve may learn that its Jacobian is sparse only while it runs)
        return r

    def stats_of(a, r):
        st = r.state
        return Stats(nf=_num(st.nf + r.nf), njvp=_num(getattr(st, "njvp", 0) + r.njvp), nvjp=_num(getattr(st, "nvjp", 0)),
                     niter=_num(r.niter), niter_per_element=r.niter_el if batched else None,
                     extra={k: _num(v) for k, v in (ran_by.get(id(r)) or small_twin(a, ctx)).extra_stats(st).items()})

    # a runaway iterate may overflow the solver's own NumPy arithmetic (host norms, dense steps): the
    # return code reports it, no RuntimeWarning
    with backend.quiet_host():
        if isinstance(alg, Polyalgorithm):
            ran = run_chain(alg, ctx, rows0, drive, traced=use_jax, maxiters=maxiters)
            res, last = ran.result, ran.attempts[-1]
            stats, alg, trace = summary(ran, stats_of, batched=batched, traced=use_jax, xp=xp)
        else:
            res = drive(alg, ctx, rows0)
            stats, trace, last = stats_of(alg, res), res.trace, (alg, res)
    codes = res.codes
    if not batched:
        if trace is not None:
            trace = trace[:, 0]
        if not isinstance(codes, list):
            codes = xp.reshape(codes, ())
    if prob.kind == "least_squares":  # the objective 0.5 ||F||^2 per element (0-d when unbatched)
        half = 0.5 * xp.sum(res.fu * res.fu, axis=1)
        stats.extra["objective"] = (half if batched else xp.reshape(half, ()) if use_jax
                                    else float(half[0]))
    sol = Solution(layout.from_rows(res.u), res_layout.from_rows(res.fu), codes, stats, user_prob, alg,
                   trace=trace, batched=batched)
    if not use_jax and not sol.successful:
        hint = small_twin(last[0], ctx).failure_hint(last[1].state, last[1].codes)
        # a root of a NonlinearProblem that a flow does not reach: the sign is the first thing to check
        if getattr(alg, "sign_sensitive", False) and prob.kind == "nonlinear":
            hint = _SIGN_HINT if hint is None else f"{hint}. {_SIGN_HINT}"
        if prob.bounded and ReturnCode.BoundConstrained in sol.retcodes:
            hint = _BOUND_HINT if hint is None else f"{_BOUND_HINT}. {hint}"
        sol.hint = hint
    if not use_jax:
        if printer is not None:
            printer.result(sol)
        _LOG.debug("%r; %r", sol, stats)
    if throw and not use_jax and not sol.successful:
        raise ConvergenceError(sol)
    if throw and use_jax:
        sol = _jax_throw(sol)
    return sol


_SIGN_HINT = ("This algorithm iterates u + a*f(u) (FixedPointIteration, Anderson) or integrates du/dt = f(u) "
              "(DynamicSS): it needs f to point towards the root (du/dt = f stable there). If your f is u - G(u), "
              "solve -f (or the FixedPointProblem of G) instead, or use a Newton-type method (newton_krylov, "
              "newton), which does not care about the sign.")


_BOUND_HINT = ("Widen the bounds if a root outside them is acceptable, or start elsewhere in the box if another "
               "root may lie inside")


def _check_honours_bounds(alg) -> None:
    """A bounded problem: refuse, before any work, an algorithm that cannot keep its iterates in the box."""
    algs = tuple(getattr(alg, "algs", ())) if isinstance(alg, Polyalgorithm) else (alg,)
    bad = [type(a).__name__ for a in algs if not getattr(a, "honours_bounds", False)]
    if bad:
        raise ValueError(f"solve: the problem has bounds (lb=, ub=), which {', '.join(bad)} cannot honour; use "
                         f"{BOUND_METHODS}")


def _check_least_squares(alg) -> None:
    """A least-squares problem: refuse, before any work, a root finder that assumes a square system."""
    algs = tuple(getattr(alg, "algs", ())) if isinstance(alg, Polyalgorithm) else (alg,)
    bad = [type(a).__name__ for a in algs if not getattr(a, "least_squares", False)]
    if bad:
        raise ValueError(f"solve: a NonlinearLeastSquaresProblem (more residuals than unknowns) needs a method for "
                         f"an m x n Jacobian, which {', '.join(bad)} is not; use GaussNewton, LevenbergMarquardt, "
                         "TrustRegion or the default")


def _least_squares_norm(norm):
    """A least-squares problem is judged (and its best iterate chosen) in the 2-norm of its objective:
    the default ``"max"`` becomes ``"l2"``; ``"l2"`` and ``"rms"`` (the same order) are kept."""
    if norm == "max":
        return "l2"
    if norm in ("l2", "rms"):
        return norm
    raise ValueError(f"solve: a NonlinearLeastSquaresProblem is measured in the 2-norm of its residuals (the "
                     f"objective 0.5 ||F||^2): norm must be 'l2' or 'rms' (the default 'max' means 'l2'), got {norm!r}")


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


def _thrown(sol, throw):
    """``sol``, or with ``throw=True`` a ConvergenceError (an ``equinox`` runtime error under tracing)."""
    if throw and backend.is_traced(sol.retcode_array):
        return _jax_throw(sol)
    if throw and not sol.successful:
        raise ConvergenceError(sol)
    return sol


def _jax_throw(sol):
    """``throw=True`` under JAX tracing: a runtime error through ``equinox.error_if`` when available."""
    try:
        import equinox as eqx
    except ImportError as e:  # pragma: no cover - equinox is part of the jax extra
        raise ValueError("solve(throw=True) inside jax.jit needs equinox (pip install equinox)") from e
    import jax.numpy as jnp

    codes = sol.retcode_array
    sol.u = eqx.error_if(sol.u, jnp.any((codes != SUCCESS_CODES[0]) & (codes != SUCCESS_CODES[1])),
                         "steadysolve: the solve did not converge (see the return code)")
    return sol
