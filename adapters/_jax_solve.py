"""The solve of the JAX adapter: the ``custom_jvp`` implicit layer on array or structured
(tuple / list / dict) states (``jax.py`` holds the public functions and modules). Glue only."""

from __future__ import annotations

from typing import Any, Optional, TypedDict, get_args

import jax
import jax.numpy as jnp
import numpy as np

import steadysolve as ss
from steadysolve._checks import check_callable, check_choice
from steadysolve._backend.layout import Layout
from steadysolve.termination import default_tolerance

from ._implicit import BACKWARD_HINT, FORWARD_HINT, Reporter, adjoint_solve, forward_stats
from .backward import DEFAULT_ADJOINT, DEQ_ADJOINT
from ._jax_split import error_if, split_inputs, zero_tangent
from ._options import FailedGrad, OnFailure, check_layer_batch_axis, layer_options
from ._structure import Structure, is_structured, tree_leaves, tree_map

__all__ = ["implicit", "run_fixed_point", "OPTIONS", "LayerOptions", "DEFAULT_MAXITERS"]

class LayerOptions(TypedDict, total=False):
    """The keyword options the Equinox modules pass on to ``fixed_point`` (for type checkers)."""

    abstol: Optional[float]
    reltol: Optional[float]
    maxiters: Optional[int]
    max_nfe: Optional[int]
    norm: Any
    batch_axis: Optional[int]
    on_failure: OnFailure
    failed_grad: FailedGrad
    backward: Any


OPTIONS = ("solver", "backward", "abstol", "reltol", "maxiters", "max_nfe", "norm", "batch_axis", "on_failure",
           "failed_grad")
ON_FAILURE, FAILED_GRAD = get_args(OnFailure), get_args(FailedGrad)
#: the cap of ``fixed_point`` and the Equinox modules when neither ``maxiters`` nor ``max_nfe`` is given
DEFAULT_MAXITERS = 1000
_DEFAULTS = dict(abstol=None, reltol=None, maxiters=None, norm="max", batch_axis=None, on_failure="warn",
                 failed_grad="implicit", backward="implicit")


def _problem(kind, fn, z_init, p, bounds=None):
    if kind == "fixed_point":
        return ss.FixedPointProblem(lambda u, p: fn(u, *p), z_init, p, rowwise=False)
    if kind == "root":
        lb, ub = (None, None) if bounds is None else bounds
        return ss.NonlinearProblem(lambda u, p: fn(u, *p), z_init, p, rowwise=False, lb=lb, ub=ub)
    return ss.SteadyStateProblem(lambda u, p, t: fn(u, *p), z_init, p, rowwise=False)


def _structured(kind, where, f, z0, args, batch_axis, kw):
    """A tuple / list / dict state: the solve runs on its rows ``(batch, n)`` (``adapters/_structure``)."""
    leaves, paths, _ = tree_leaves(z0, "z0")
    for p, v in zip(paths, leaves):
        if not isinstance(v, (jax.Array, jax.core.Tracer, np.ndarray, np.generic)):
            raise TypeError(f"{where}: every leaf of a structured initial guess must be a JAX array; {p} is a "
                            f"{type(v).__name__}")
    z0 = tree_map(jnp.asarray, z0)
    if batch_axis is not None and (isinstance(batch_axis, bool) or not isinstance(batch_axis, int)):
        raise TypeError(f"{where}: batch_axis must be an int or None, got {batch_axis!r}")
    st = Structure(z0, batch_axis, where, "z0")
    rows = implicit(kind, where, lambda zr, *a: st.flatten(f(st.unflatten(zr), *a), f"{where}: f"), st.flatten(z0),
                     args, batch_axis=None if batch_axis is None else 0, **kw)
    return st.unflatten(rows[0]), rows[1]


_ONCE = (" (Warned once for this call, or this compiled function under jit; stats.retcode_array holds every "
         "code, on_failure='warn_always' warns each time.)")


def _report(on_failure, where, stats, batch, hint, when=None):
    """``on_failure`` for a solve's stats: eagerly at once; under a trace by a host callback at run
    time (the codes exist only then). ``"raise"`` is the core's ``throw`` (``ConvergenceError``
    eagerly, ``equinox.error_if`` under ``jit``), not handled here."""
    if on_failure in ("ignore", "raise"):
        return
    # made at trace time: "warn" warns once per eager call (as torch's fixed_point) and once per compiled
    # function under jit (a training step's jitted DEQ warns once, as a torch DEQ module does)
    reporter = Reporter(on_failure, {}, set(), once=_ONCE)
    when = jnp.asarray(True) if when is None else when  # (False: the failures are not this phase's to report)
    if isinstance(stats.retcode_array, jax.core.Tracer) or isinstance(when, jax.core.Tracer):
        jax.debug.callback(lambda st, w: reporter(st, batch, hint) if bool(w) else None, stats, when)
    elif bool(when):
        reporter(stats, batch, hint)


def implicit(kind, where, f, z0, args, *, solver, abstol, reltol, maxiters, norm, batch_axis, backward, unknown,
              on_failure="warn", failed_grad="implicit", default_adjoint=DEFAULT_ADJOINT, bounds=None):
    check_callable(where, "f", f)
    check_choice(where, "on_failure", on_failure, ON_FAILURE)
    check_choice(where, "failed_grad", failed_grad, FAILED_GRAD)
    if failed_grad != "implicit" and kind != "fixed_point":
        raise ValueError(f"{where}: failed_grad={failed_grad!r} needs a fixed-point map (the Jacobian-free "
                         "gradient of z = f(z)); use fixed_point, or leave failed_grad='implicit'")
    if bounds is not None and is_structured(z0):
        raise TypeError(f"{where}: bounds (lb=, ub=) need an array initial guess, not a structured one")
    if is_structured(z0):
        kw = dict(solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, on_failure=on_failure,
                  failed_grad=failed_grad, backward=backward, unknown=unknown, default_adjoint=default_adjoint)
        return _structured(kind, where, f, z0, args, batch_axis, kw)
    if isinstance(z0, (np.ndarray, np.generic)):
        z0 = jnp.asarray(z0)
    if not isinstance(z0, (jax.Array, jax.core.Tracer)):
        raise TypeError(f"{where}: the initial guess must be a JAX array, got {type(z0).__name__}")
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        raise TypeError(f"{where}: the initial guess must have a real floating dtype, got {z0.dtype}")
    max_nfe = unknown.pop("max_nfe", None)
    opts = layer_options(where, solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm,
                         batch_axis=batch_axis, backward=backward,
                         defaults=(default_tolerance(jnp, z0.dtype),) * 2,
                         unknown=unknown, valid=OPTIONS if kind == "fixed_point" else OPTIONS[:-1],
                         max_nfe=max_nfe, default_maxiters=DEFAULT_MAXITERS,
                         deq=kind == "fixed_point", default_adjoint=default_adjoint)
    opts = check_layer_batch_axis(where, opts, tuple(z0.shape))
    opts = opts.budgeted(Layout(jnp, tuple(z0.shape), opts.batch_axis).n)  # max_nfe: the work budget
    throw = on_failure == "raise"
    bwd = opts.backward
    if bwd.mode == "phantom" and kind != "fixed_point":
        raise ValueError(f"{where}: a Phantom backward needs a fixed-point map; use backward=Implicit(...)")
    user_f, dlist, ndlist = split_inputs(where, f, z0, args)
    layout = Layout(jnp, tuple(z0.shape), opts.batch_axis)

    def forward(z_init, dlist, ndlist):
        dlist, ndlist, z_init = jax.tree_util.tree_map(jnp.asarray, (dlist, ndlist, z_init))
        sol = ss.solve(_problem(kind, user_f, z_init, (dlist, ndlist), bounds), opts.solver, throw=throw,
                       **opts.solve_kwargs())
        stats = forward_stats(sol, opts, layout, jnp)
        _report(on_failure, where, stats, layout.batch, FORWARD_HINT)
        return sol.u, stats

    if bwd.mode == "phantom":
        z, stats = forward(z0, dlist, ndlist)
        z = jax.lax.stop_gradient(z)
        for _ in range(bwd.steps):
            fz = user_f(z, dlist, ndlist)
            z = fz if bwd.damping == 1.0 else (1.0 - bwd.damping) * z + bwd.damping * fz
        return z, stats

    def linsolve(op, b, fwd_bad):
        """x with op(x) = b; op is J_F(z*) or its transpose (J_f - I for a fixed point); ``fwd_bad`` flags the
        elements whose forward solve failed (the only ones the DEQ default's series may truncate)."""
        if kind == "fixed_point":  # (J_f - I) x = b  <=>  (I - J_f) x = -b
            res = adjoint_solve(lambda v: op(v) + v, -b, bwd, fixed_point_form=True, batch_axis=opts.batch_axis,
                                norm=opts.norm, forward_failed=fwd_bad)
        else:
            res = adjoint_solve(op, b, bwd, fixed_point_form=False, batch_axis=opts.batch_axis, norm=opts.norm)
        x = res.w
        bad = jnp.reshape(jnp.asarray(res.stats.retcode_array) != 0, (-1,))
        if bwd.truncate:  # truncated elements (forward failed, already reported) are no backward failure
            bad = bad & ~jnp.reshape(fwd_bad, (-1,))
        _report(on_failure, where, res.stats, layout.batch, BACKWARD_HINT, when=jnp.any(bad))
        if throw:
            x = error_if(x, jnp.any(bad),
                          f"steadysolve: the implicit-differentiation linear solve in {where} did not converge "
                          "(raise maxiters or loosen reltol of backward=Implicit(...))")
        return x

    @jax.custom_jvp
    def solve(z_init, dlist, ndlist):
        return forward(z_init, dlist, ndlist)

    def solve_jvp(primals, tangents):
        z_init, dlist, ndlist = primals
        _, ddlist, _ = tangents
        z, stats = solve(z_init, dlist, ndlist)
        stats_t = jax.tree_util.tree_map(zero_tangent, stats)
        live = [i for i, t in enumerate(ddlist) if not isinstance(t, jax.custom_derivatives.SymbolicZero)]
        if not live:
            return (z, stats), (jnp.zeros_like(z), stats_t)

        def residual(zz, dl):
            r = user_f(zz, dl, ndlist)
            return r - zz if kind == "fixed_point" else r

        def F_live(sub):
            dl = list(dlist)
            for i, v in zip(live, sub):
                dl[i] = v
            return residual(z, dl)

        _, Fp_dp = jax.jvp(F_live, ([dlist[i] for i in live],),
                           ([jnp.asarray(ddlist[i], dtype=jnp.result_type(dlist[i])) for i in live],))
        _, A = jax.linearize(lambda zz: residual(zz, dlist), z)
        fwd_bad = jnp.asarray(stats.retcode_array) != 0
        lin = lambda op, b: linsolve(op, b, fwd_bad)  # noqa: E731
        dz = jax.lax.custom_linear_solve(A, -Fp_dp, solve=lin, transpose_solve=lin)
        if failed_grad == "jfb":  # failed elements: the Jacobian-free gradient, dz = f_p dp (J_f taken as 0)
            failed = layout.per_element(jnp.asarray(stats.retcode_array) != 0)
            dz = jnp.where(failed, Fp_dp, dz)
        return (z, stats), (dz, stats_t)

    solve.defjvp(solve_jvp, symbolic_zeros=True)
    return solve(z0, dlist, ndlist)


def run_fixed_point(where: str, f, z0, *args, solver="anderson", **options):
    """``fixed_point`` with its defaults, for the DEQ modules (``where`` names the caller in errors):
    ``Implicit()``'s adjoint is the modules' (``backward.DEQ_ADJOINT``)."""
    kw = dict(_DEFAULTS)
    kw.update({k: options.pop(k) for k in list(options) if k in _DEFAULTS})
    return implicit("fixed_point", where, f, z0, args, solver=solver, unknown=options, default_adjoint=DEQ_ADJOINT,
                    **kw)
