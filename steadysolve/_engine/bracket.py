"""``solve`` on an :class:`~steadysolve.IntervalNonlinearProblem`: validation, the per-element verdict,
one eager loop and one ``jax.lax.while_loop`` over the same ``init`` / ``step`` / ``judge``, and the
:class:`~steadysolve.Solution`.

Not the ``u0`` driver (``loop.py``): there is no iterate norm or residual scale to judge, every element
is one scalar problem, and the test is on the bracket. Per element, with ``x0``, ``x1`` the ends of
its bracket::

    Success   when |x1 - x0| <= abstol + reltol * min(|x0|, |x1|)   (or f = 0 exactly at an end)

with ``abstol`` at least the dtype's smallest normal number and ``reltol`` at least its ``eps`` (one
given alone binds: the other is 0 before these floors), so that a bracket of two adjacent
floating-point numbers always passes (the root is then located as
well as the dtype allows). ``sol.u`` is the end with the smaller ``|f|``, hence within
``abstol + reltol * |u|`` of a point where ``f`` changes sign. The other codes: ``NoBracket`` (the
same sign at both initial ends), ``NonFinite`` (``f`` NaN at an end or at a new point: the element
keeps its last bracket), ``MaxIters``, and ``Diverged`` for a bracket that closed on a point where
``|f|`` exceeds its values at both initial ends (a pole or another discontinuity where ``f`` changes
sign, not a root). An element that has stopped is never stepped again: its bracket is frozen and
``f`` is evaluated at one of its ends.
"""

from __future__ import annotations

import contextlib

from .. import _backend as backend
from .._backend import fused
from .._checks import check_int, check_tol
from ..algorithms.bracketing import Book, BracketContext
from ..algorithms.itp import ITP
from ..interval import IntervalNonlinearProblem
from ..problems import as_output, check_output, checked
from ..registry import resolve
from ..retcodes import RUNNING, ReturnCode
from ..solution import Solution, Stats, register_jax_pytrees
from ..termination import default_tolerance
from .bracket_parts import Narrowing, Outcome, blocked, run_blocks

__all__ = ["solve_interval", "judge", "DEFAULT_RELTOL_EPS"]

_DEFAULT = ITP()
#: default ``reltol``, in units of the dtype's eps (SciPy's ``brentq`` and ``find_root`` use 4 eps)
DEFAULT_RELTOL_EPS = 4.0
_SUCCESS = ReturnCode.Success.code
_NONFINITE = ReturnCode.NonFinite.code
_MAXITERS = ReturnCode.MaxIters.code
_DIVERGED = ReturnCode.Diverged.code
_NOBRACKET = ReturnCode.NoBracket.code
_TO_SUCCESS = _SUCCESS - RUNNING
_TO_NONFINITE = _NONFINITE - _SUCCESS

# solve() keywords that mean nothing here, with their defaults and why
_UNUSED = {
    "norm": ("max", "the tolerances apply to the bracket's width (abstol + reltol * |x|), not to a residual norm"),
    "batch_axis": (None, "every element of the bracket arrays is already its own problem"),
    "store_trace": (False, "a bracketing solve keeps no residual trace; sol.stats holds the final bracket"),
    "callback": (None, "a bracketing solve takes no callback"),
    "verbose": (False, "a bracketing solve prints no per-iteration table (sol.stats has the counts per element)"),
}


def solve_interval(prob: IntervalNonlinearProblem, alg, abstol, reltol, maxiters, **keywords) -> Solution:
    """The body of ``solve(prob, alg, ...)`` for an IntervalNonlinearProblem (``keywords``: the other
    ``solve`` keywords, which must keep their defaults)."""
    for key, value in keywords.items():
        default, why = _UNUSED[key]
        if value is not default and value != default:
            raise TypeError(f"solve: {key}={value!r} does not apply to an IntervalNonlinearProblem: {why}")
    alg = _DEFAULT if alg is None else resolve(alg, "bracketing")
    abstol = check_tol("solve", "abstol", abstol)
    reltol = check_tol("solve", "reltol", reltol)
    maxiters = check_int("solve", "maxiters", maxiters, 1)
    lo, hi, p = prob.lo, prob.hi, prob.p
    xp = backend.namespace(("lo", lo), ("hi", hi), ("p", p))
    host_numpy = backend.library_name(lo) in ("numpy", "array_api_strict")
    if host_numpy:  # our arithmetic on frozen or infinite values may warn: quiet, but not inside f
        np = backend.host_numpy()
        user_err, quiet = np.geterr(), np.errstate(all="ignore")
    else:
        user_err, quiet = None, contextlib.nullcontext()
    with backend.no_grad(xp), quiet:
        return _solve(prob, alg, xp, abstol, reltol, maxiters, user_err)


def _caller(f, p, like, user_err):
    """``f`` of one argument (``p`` bound), checked for shape and dtype (``like``'s) on every call, under
    the user's own NumPy error state (``user_err``) when the solve runs quietly around it."""
    fname = f"f ({getattr(f, '__name__', type(f).__name__)})"
    check = checked(lambda x: f(x, p), fname, like)
    zero_d_numpy = like.ndim == 0 and type(like) is backend.host_numpy().ndarray
    if user_err is None:
        return check
    np = backend.host_numpy()

    def call(x):
        if zero_d_numpy:
            x = np.asarray(x)  # NumPy arithmetic on 0-d arrays returns scalars: f gets an array
        with np.errstate(**user_err):
            return check(x)

    return call


def _first_values(prob, x, end, user_err):
    """``f`` at one end of the bracket, validated (array, library, shape, dtype) before any iteration."""
    if user_err is None:
        out = prob.f(x, prob.p)
    else:
        with backend.host_numpy().errstate(**user_err):
            out = prob.f(x, prob.p)
    out = as_output(out, x)
    check_output("f", out, x, None, like=end, hint="f must be elementwise, with values of x's {}")
    return out


def _solve(prob, alg, xp, abstol, reltol, maxiters, user_err):
    lo, hi = prob.lo, prob.hi
    flo = _first_values(prob, lo, "lo", user_err)
    fhi = _first_values(prob, hi, "hi", user_err)
    fi = xp.finfo(lo.dtype)
    if abstol is None and reltol is None:
        abstol, reltol = default_tolerance(xp, lo.dtype), DEFAULT_RELTOL_EPS * float(fi.eps)
    # a tolerance given alone binds (the other is 0), as everywhere; the floors make adjacent ends pass
    abstol = max(abstol or 0.0, float(fi.smallest_normal))
    reltol = max(reltol or 0.0, float(fi.eps))
    out = None
    traced = backend.is_jax(xp) and any(backend.is_traced(v) for v in backend.tree_leaves((lo, hi, prob.p, flo)))
    if backend.is_jax(xp):
        register_jax_pytrees()
        if not traced:
            out = _compiled(prob, alg, abstol, reltol, maxiters, flo, fhi)
    if out is None and not traced and blocked(prob):
        out = run_blocks(xp, prob, flo, fhi,
                         lambda part, a, b: _run(part, alg, abstol, reltol, maxiters, a, b, user_err, _run_eager),
                         lambda p, like: _caller(prob.f, p, like, user_err))
    if out is None:
        out = _run(prob, alg, abstol, reltol, maxiters, flo, fhi, user_err, _run_jax if traced else _run_eager)
    if not traced:
        out = out._replace(it=int(out.it), calls=int(out.calls))
    return _solution(alg, prob, out, flo, fhi, xp)


def _context(xp, f, p, like, abstol, reltol, user_err):
    return BracketContext(xp, _caller(f, p, like, user_err), abstol, reltol,
                          lambda cond, pairs: fused.select(xp, cond, pairs))


def _context_of(prob, xp, abstol, reltol, user_err):
    return _context(xp, prob.f, prob.p, prob.lo, abstol, reltol, user_err)


def _run(prob, alg, abstol, reltol, maxiters, flo, fhi, user_err, loop):
    """The :class:`Outcome` of ``loop`` (the eager or the traced one) from the ends' values."""
    xp = backend.namespace(("lo", prob.lo), ("hi", prob.hi), ("p", prob.p))
    ctx = _context_of(prob, xp, abstol, reltol, user_err)
    state = _start(alg, prob, prob.lo, prob.hi, flo, fhi, ctx)
    return loop(alg, prob, state, ctx, maxiters, user_err)


def _traced_core(f, alg, abstol, reltol, maxiters, lo, hi, flo, fhi, p):
    prob = IntervalNonlinearProblem(f, (lo, hi), p)  # (on tracers: no value checks)
    return _run(prob, alg, abstol, reltol, maxiters, flo, fhi, None, _run_jax)


_JITTED = []


def _compiled(prob, alg, abstol, reltol, maxiters, flo, fhi):
    """Concrete JAX arrays: the :class:`Outcome` of the traced loop under ``jax.jit`` (dispatching
    op by op costs more than the arithmetic), cached on ``(f, alg)`` and the shapes (the tolerances
    and ``maxiters`` are arguments), so that solving again with the same ``f`` does not compile again.
    None when ``f`` or ``p`` cannot be traced (Python control flow on values, a non-array ``p``, an
    unhashable ``f``): the eager loop then runs the solve (and raises there if ``f`` itself fails)."""
    import jax

    if not _JITTED:
        _JITTED.append(jax.jit(_traced_core, static_argnums=(0, 1)))
    try:
        return _JITTED[0](prob.f, alg, abstol, reltol, maxiters, prob.lo, prob.hi, flo, fhi, prob.p)
    except Exception:
        return None


def _const(xp, value, like):
    return xp.asarray(value, dtype=xp.int32, device=backend.device_of(like))


def _start(alg, prob, lo, hi, flo, fhi, ctx):
    """The codes of the initial brackets and the method's first state (ends sorted by sign)."""
    xp = ctx.xp
    n, p, fn, fp = ctx.select(flo <= 0, [(lo, hi), (hi, lo), (flo, fhi), (fhi, flo)])
    tol = ctx.abstol + ctx.reltol * xp.minimum(xp.abs(lo), xp.abs(hi))
    code = xp.full(tuple(lo.shape), RUNNING, dtype=xp.int32, device=backend.device_of(lo))
    # later rules win: a zero at an end is a root whatever the other end holds
    for cond, value in (((hi - lo) <= tol, _SUCCESS), ((flo < 0) == (fhi < 0), _NOBRACKET),
                        (xp.isnan(flo) | xp.isnan(fhi), _NONFINITE), ((flo == 0) | (fhi == 0), _SUCCESS)):
        code = xp.where(cond, _const(xp, value, lo), code)
    book = Book(code, xp.zeros(tuple(lo.shape), dtype=xp.int32, device=backend.device_of(lo)), tol,
                xp.zeros(tuple(lo.shape), dtype=xp.bool, device=backend.device_of(lo)))
    return alg.init(prob, n, p, fn, fp, book, ctx)


def judge(alg, state, ctx):
    """The verdict after a step, per running element: ``NonFinite`` when ``f`` was NaN at its new point,
    ``Success`` when its bracket is within tolerance; the iteration counted; the tolerance at the new ends."""
    xp = ctx.xp
    book = state.book
    running = book.code == RUNNING
    x0, x1, _, _ = alg.ends(state)
    tol = xp.minimum(xp.abs(x0), xp.abs(x1))
    tol *= ctx.reltol  # (in place: a temporary made here)
    tol += ctx.abstol
    done = xp.abs(x1 - x0) <= tol
    # the codes by integer arithmetic (a select on a mask without a pattern costs far more on NumPy):
    # RUNNING + _TO_SUCCESS = Success, + _TO_NONFINITE more = NonFinite (which wins)
    code = book.code + _TO_SUCCESS * xp.astype(running & (done | book.bad), xp.int32)
    code = code + _TO_NONFINITE * xp.astype(running & book.bad, xp.int32)
    niter = book.niter + xp.astype(running, xp.int32)
    return state._replace(book=Book(code, niter, tol, book.bad))


def _run_eager(alg, prob, state, ctx, maxiters, user_err):
    """One host read per iteration (how many elements still run). On NumPy, PyTorch and CuPy, once at
    most half of the current elements run, the loop continues on those alone (``bracket_parts``)."""
    xp = ctx.xp
    narrowing = Narrowing(xp, prob, alg, lambda p, like: _context(xp, prob.f, p, like, ctx.abstol, ctx.reltol,
                                                                     user_err), getattr(prob, "checked", False))
    it = 0
    while it < maxiters:
        running = state.book.code == RUNNING
        nrun = int(xp.sum(xp.astype(running, xp.int32)))
        if nrun == 0:
            break
        if narrowing.worth_it(nrun, state):
            narrowed = narrowing.narrow(state, running)
            if narrowed is not None:  # (None: f is not elementwise in p, or needs the brackets' shape)
                state, ctx = narrowed
        try:
            state = alg.step(prob, state, ctx)
        except Exception as e:
            if hasattr(e, "add_note"):  # Python >= 3.11: where the user's function failed
                e.add_note(f"(raised in iteration {it + 1} of steadysolve.solve with {type(alg).__name__})")
            raise
        state = judge(alg, state, ctx)
        it += 1
    return narrowing.finish(state, it)


def _run_jax(alg, prob, state, ctx, maxiters, user_err=None):
    import jax
    import jax.numpy as jnp

    def cond(carry):
        st, it = carry
        return jnp.any(st.book.code == RUNNING) & (it < maxiters)

    def body(carry):
        st, it = carry
        return judge(alg, alg.step(prob, st, ctx), ctx), it + 1

    state, it = jax.lax.while_loop(cond, body, (state, jnp.asarray(0, dtype=jnp.int32)))
    return Outcome(*alg.ends(state), state.book.code, state.book.niter, it, alg.evals_per_step * it)


def _solution(alg, prob, out: Outcome, flo, fhi, xp):
    lo = prob.lo

    def select(cond, pairs):
        return fused.select(xp, cond, pairs)

    x0, x1, f0, f1 = out.x0, out.x1, out.f0, out.f1  # (a stopped element's ends never move: see judge)
    u, fu = select((xp.abs(f0) <= xp.abs(f1)) | xp.isnan(f1), [(x0, x1), (f0, f1)])
    code = xp.where(out.code == RUNNING, _const(xp, _MAXITERS, out.code), out.code)
    pole = (code == _SUCCESS) & (xp.abs(fu) > xp.maximum(xp.abs(flo), xp.abs(fhi)))
    code = xp.where(pole, _const(xp, _DIVERGED, code), code)
    batched = lo.ndim > 0
    k = alg.evals_per_step
    stats = Stats(nf=2 + out.calls, niter=out.it, niter_per_element=out.niter if batched else None,
                  extra={"nf_per_element": 2 + k * out.niter if batched else None,
                         "bracket": (as_output(xp.minimum(x0, x1), lo), as_output(xp.maximum(x0, x1), lo))})
    return Solution(as_output(u, lo), as_output(fu, lo), code, stats, prob, alg, batched=batched)
