"""DynamicSS with a Rosenbrock integrator: the Jacobian and linear-algebra part of its state and step.

``DynamicSS`` keeps one state layout for every integrator; a Rosenbrock method adds a
:class:`StiffWork` leaf (``DynamicSSState.lin``): the Jacobian of the vector field at the current
iterate and the counts of Jacobians, factorisations and linear solves. The Jacobian is rebuilt
only where the last attempt was accepted (a rejected attempt leaves ``u`` where it was, so the
retry with a smaller step reuses it: a host branch eagerly, ``lax.cond`` under JAX tracing, as the
dense Newton methods do). It comes from the problem's ``jac`` when given, else automatic
differentiation (PyTorch, JAX) or ``n`` finite differences (counted in ``njvp``).

The local-error tolerances default to the square roots of the solve's ``reltol`` and ``abstol``
(5.5e-7 for the float64 defaults; the controller's own, when set, bind): an L-stable method has no
stability boundary to settle at, so the steady-state tolerance need not bind the trajectory (an
explicit method's does, a tenth of it), and once the step is long a Rosenbrock step is a Newton
step on ``f``, which reaches the steady-state tolerance in a few steps.

A non-autonomous ``SteadyStateProblem`` (the method's ``autonomous=False``, the default) has its
Jacobian taken of ``f(., p, t)`` at the element's time; the problem's ``jac`` / ``jvp`` (which take
no ``t``) are used as given.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from .._backend.derivatives import Products
from ..ode._elements import elements
from ..ode._rosenbrock_step import rosenbrock_attempt
from ..ode.rosenbrock import Rosenbrock
from ._stability import unstable_equilibrium
from .dense import refresh_jacobian

__all__ = ["Rosenbrock", "StiffWork", "stiff_work", "stiff_attempt", "stiff_stats", "stiff_tolerances"]


class StiffWork(NamedTuple):
    J: Any  # (B, n, n) the vector field's Jacobian at the state's u
    njac: Any  # Jacobians built (counters: ints eagerly, 0-d arrays under the JAX driver)
    nfact: Any  # factorisations of W
    nsolve: Any  # linear solves with W
    unstable: Any = None  # (B,) bool: the step landed near an unstable equilibrium (SteadyStateProblem)


def stiff_work(ctx) -> StiffWork:
    """The initial :class:`StiffWork` (the first attempt builds the Jacobian)."""
    xp = ctx.xp
    J = xp.zeros((ctx.batch, ctx.n, ctx.n), dtype=ctx.dtype, device=ctx.device)
    bad = xp.zeros((ctx.batch,), dtype=xp.bool, device=ctx.device) if ctx.kind == "steady_state" else None
    return StiffWork(J, ctx.counter(0), ctx.counter(0), ctx.counter(0), bad)


def stiff_tolerances(controller, ctx):
    """The local-error ``(reltol, abstol)`` of a Rosenbrock integrator (see the module notes)."""
    return controller.tolerances(ctx.reltol ** 0.5, ctx.abstol ** 0.5)


def stiff_attempt(alg, prob, state, ctx, reltol: float, abstol: float):
    """``(attempted, work, njvp, nf)``: one Rosenbrock attempt of ``DynamicSS`` ``alg`` from ``state``
    (``njvp``, ``nf``: the products of its Jacobian and the calls of ``f`` they made, by finite differences)."""
    xp, method, work = ctx.xp, alg.integrator, state.lin
    field = alg._field(ctx)
    timed = ctx.kind == "steady_state"
    jctx = ctx
    if timed and not method.autonomous and prob.jac is None and prob.jvp is None:
        tb = ctx.batched(state.t)
        jctx = replace(ctx, products=Products(xp, lambda v: field(tb, v)))
    J, njvp, njac = refresh_jacobian(jctx, state.u, state.fu, work.J, ~state.rejected)
    a = rosenbrock_attempt(elements(xp), method, alg.controller, field, J, state.t, state.h, state.u, state.fu,
                           state.err_prev, state.rejected, reltol, abstol, alg.time_limit(ctx), time_dependent=timed)
    # long L-stable steps converge like Newton's method, onto unstable equilibria too (_stability)
    bad = unstable_equilibrium(ctx, a.u, a.fu, J)
    if bad is not None:
        bad = bad & a.accept
        keep = xp.reshape(bad, (ctx.batch, 1))
        a = a._replace(u=xp.where(keep, state.u, a.u), fu=xp.where(keep, state.fu, a.fu))
    work = StiffWork(J, work.njac + njac, work.nfact + a.rk.nfact, work.nsolve + a.rk.nsolve, bad)
    return a, work, njvp, jctx.f_calls(njvp)


def stiff_stats(work) -> dict:
    """The linear-algebra counts for ``Solution.stats`` (none for an explicit integrator)."""
    if work is None:
        return {}
    return {"njac": work.njac, "nfact": work.nfact, "nsolve": work.nsolve}
