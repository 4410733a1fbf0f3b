"""DynamicSS with a Rosenbrock integrator: the Jacobian and linear-algebra part of its state and step.

``DynamicSS`` keeps one state layout for every integrator; a Rosenbrock method adds a
:class:`StiffWork` leaf (``DynamicSSState.lin``): the Jacobian of the vector field at the current
iterate and the counts of Jacobians, factorisations and linear solves. The Jacobian is rebuilt
only where the last attempt was accepted (a rejected attempt leaves ``u`` where it was, so the
retry with a smaller step reuses it: a host branch eagerly, ``lax.cond`` under JAX tracing, as the
dense Newton methods do). It comes from the problem's ``jac`` when given, else automatic
differentiation (PyTorch, JAX) or ``n`` finite differences (counted in ``njvp``).

With a sparse Jacobian (the problem's ``sparsity=`` or a sparse ``jac``) the default W-solver is
:class:`~steadysolve.ode.SparseLU`: ``J`` is then ``(B, nnz)`` values on the pattern
(``ctx.sparse_jacobians``: the sparse ``jac``, or one product per colour of the pattern's columns)
and ``W`` is factorised by SuperLU (NumPy). The stability guard below needs eigenvalues of a dense
``J``: a sparse one is made dense for it up to ``STABILITY_MAX_N`` unknowns, and not checked above.

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

from .. import _backend as backend
from .._backend.derivatives import Products
from ..ode._elements import elements
from ..ode._rosenbrock_step import rosenbrock_attempt
from ..ode._wsolve import SparseRows, dense_from_rows
from ..ode.rosenbrock import Rosenbrock
from ..sparse import SparseJacobians
from ._stability import unstable_equilibrium
from .dense import refresh_jacobian

__all__ = ["Rosenbrock", "StiffWork", "stiff_work", "stiff_attempt", "stiff_stats", "stiff_tolerances",
           "w_solver", "sparse_probe", "sparse_source", "refresh_sparse", "unstable_sparse", "STABILITY_MAX_N"]

#: a sparse Jacobian is made dense for the stability guard up to this many unknowns per element
STABILITY_MAX_N = 500


class StiffWork(NamedTuple):
    J: Any  # (B, n, n) the vector field's Jacobian at the state's u, or (B, nnz) values on the sparse pattern
    njac: Any  # Jacobians built (counters: ints eagerly, 0-d arrays under the JAX driver)
    nfact: Any  # factorisations of W
    nsolve: Any  # linear solves with W
    unstable: Any = None  # (B,) bool: the step landed near an unstable equilibrium (SteadyStateProblem)


def sparse_probe(ctx, prob, u, fu):
    """``(ctx.sparse_jacobians(u), probes)``: the first ask calls the problem's ``jac`` at ``u`` to see whether
    it is sparse. A dense answer is held for the first dense Jacobian at ``u`` (the engine's context), so
    that call is the algorithm's own; a sparse one is read here (``at(u, fu)`` takes the held one) and
    ``probes`` (0 or 1) counts it, since the algorithm's first Jacobian calls ``jac`` again."""
    probing = ctx.sparse_source is not None and prob.jac is not None
    sj = ctx.sparse_jacobians(u)
    read = probing and sj is not None and sj.from_jac
    if read:
        sj.at(u, fu)
    return sj, int(read)


def w_solver(method: Rosenbrock, ctx, u):
    """``(W-solver, SparseJacobians or None)`` of ``method`` in this solve (rows ``u``: where a ``jac``
    without ``sparsity=`` is first called to see whether it is sparse, unless the method's W-solver is
    dense)."""
    ls = method.linsolve
    sj = ctx.sparse_jacobians(u) if ls is None or ls.jacobian == "sparse" else None
    ws = method.w_solver(sj is not None)
    if ws.jacobian == "sparse" and sj is None:
        raise ValueError(f"{type(method).__name__}(linsolve={type(ws).__name__}()) needs a sparse Jacobian: give the "
                         "problem sparsity= or a jac returning a sparse matrix")
    return ws, (sj if ws.jacobian == "sparse" else None)


def sparse_source(sj: SparseJacobians, products) -> SparseJacobians:
    """``sj``, or, for colouring, the same pattern and colours with other ``products`` (the field at the
    element's time); a sparse ``jac`` is used as given."""
    if sj.from_jac or products is None:
        return sj
    out = SparseJacobians(sj.xp, sj.dtype, sj.device, sj.batch, sj.n, sj.pattern, None, products)
    out._groups = sj.groups  # the colouring plan depends on the pattern only
    return out


def refresh_sparse(ctx, sj: SparseJacobians, u, fu, old, need):
    """As :func:`~steadysolve.algorithms.dense.refresh_jacobian` for values on ``sj``'s pattern: ``(values
    (B, nnz) where need, else old), products, Jacobians built)``."""
    xp = ctx.xp
    nb = xp.reshape(need, (ctx.batch, 1))

    def build(args):
        vals, nprod = sj.at(*args)
        return xp.where(nb, vals, old), nprod

    (vals, nprod), ran = backend.when_any(xp, need, build, lambda args: (old, 0), (u, fu))
    return vals, nprod, ran


def unstable_sparse(ctx, u, fu, J: SparseRows):
    """:func:`unstable_equilibrium` with a sparse ``J`` made dense, up to ``STABILITY_MAX_N`` unknowns
    (None above: not checked)."""
    if ctx.kind != "steady_state" or ctx.n > STABILITY_MAX_N:
        return None
    return unstable_equilibrium(ctx, u, fu, dense_from_rows(ctx.xp, J))


def _nnz(sj: SparseJacobians, u, fu) -> int:
    """The entries per element, with the colouring plan built now: not inside the ``lax.cond`` of a refresh,
    whose trace its arrays would leak from."""
    try:
        nnz = sj.pattern.nnz
    except RuntimeError:  # a sparse jac's structure is read at its first call (no products)
        return int(sj.at(u, fu)[0].shape[1])
    if not sj.from_jac:
        sj.groups
    return nnz


def stiff_work(ctx, prob, method: Rosenbrock, u, fu) -> StiffWork:
    """The initial :class:`StiffWork` (the first attempt builds the Jacobian; ``njac`` counts the problem's
    ``jac`` called to see whether it is sparse)."""
    xp = ctx.xp
    ls = method.linsolve
    probes = sparse_probe(ctx, prob, u, fu)[1] if ls is None or ls.jacobian == "sparse" else 0
    _, sj = w_solver(method, ctx, u)
    shape = (ctx.batch, ctx.n, ctx.n) if sj is None else (ctx.batch, _nnz(sj, u, fu))
    J = xp.zeros(shape, dtype=ctx.dtype, device=ctx.device)
    bad = xp.zeros((ctx.batch,), dtype=xp.bool, device=ctx.device) if ctx.kind == "steady_state" else None
    return StiffWork(J, ctx.counter(probes), ctx.counter(0), ctx.counter(0), bad)


def stiff_tolerances(controller, ctx):
    """The local-error ``(reltol, abstol)`` of a Rosenbrock integrator (see the module notes)."""
    return controller.tolerances(ctx.reltol ** 0.5, ctx.abstol ** 0.5)


def stiff_attempt(alg, prob, state, ctx, reltol: float, abstol: float):
    """``(attempted, work, njvp, nf)``: one Rosenbrock attempt of ``DynamicSS`` ``alg`` from ``state``
    (``njvp``, ``nf``: the products of its Jacobian and the calls of ``f`` they made, by finite differences)."""
    xp, method, work = ctx.xp, alg.integrator, state.lin
    field = alg._field(ctx)
    timed = ctx.kind == "steady_state"
    ws, sj = w_solver(method, ctx, state.u)
    jctx, products = ctx, None
    if timed and not method.autonomous and prob.jac is None and prob.jvp is None:
        tb = ctx.batched(state.t)
        products = Products(xp, lambda v: field(tb, v))
        jctx = replace(ctx, products=products)
    if sj is None:
        J, njvp, njac = refresh_jacobian(jctx, state.u, state.fu, work.J, ~state.rejected)
        Jw = J
    else:
        J, njvp, njac = refresh_sparse(ctx, sparse_source(sj, products), state.u, state.fu, work.J, ~state.rejected)
        Jw = SparseRows(J, sj.pattern)
    a = rosenbrock_attempt(elements(xp), method, alg.controller, field, Jw, state.t, state.h, state.u, state.fu,
                           state.err_prev, state.rejected, reltol, abstol, alg.time_limit(ctx), time_dependent=timed,
                           ws=ws)
    # long L-stable steps converge like Newton's method, onto unstable equilibria too (_stability)
    bad = unstable_equilibrium(ctx, a.u, a.fu, J) if sj is None else unstable_sparse(ctx, a.u, a.fu, Jw)
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
