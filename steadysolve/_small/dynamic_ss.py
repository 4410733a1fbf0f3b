"""``DynamicSS`` with an explicit Runge-Kutta pair on ONE NumPy system: the same attempt on Python floats.

The generic :class:`~steadysolve.DynamicSS` keeps its time, step size, controller memory and
decisions in ``(B,)`` arrays; for one NumPy system they are Python floats here, and the attempt
(:func:`steadysolve.ode.adaptive.attempt`, the same function) runs its controller on them through
:data:`~steadysolve._small.floats.FLOATS`. The rows ``(1, n)`` stay NumPy arrays; the stages are
written into one workspace per solve. What is fixed per solve (the field, the local tolerances,
the time limit) is computed once, in ``init``.

:class:`SmallStiffDynamicSS` is the twin of a Rosenbrock ``DynamicSS``: the same
:func:`~steadysolve.ode._rosenbrock_step.rosenbrock_attempt` on Python floats, the Jacobian rebuilt
after an accepted step only (a host branch), the W-solver of the generic solve (the dense LU through
LAPACK directly, or the sparse LU), and the same stability guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import _backend as backend
from .._backend.derivatives import Products, fd_jvp
from ..algorithms._dynamic_stiff import sparse_probe, sparse_source, stiff_stats, unstable_sparse, w_solver
from ..algorithms._stability import NEAR, unstable_equilibrium
from ..algorithms.base import Algorithm
from ..algorithms.dynamic_ss import DynamicSS, Watch, field_rms, new_watch, watch, watch_hint
from ..ode._rosenbrock_step import rosenbrock_attempt
from ..ode._wsolve import SparseRows
from ..ode.adaptive import attempt, first_step
from ..ode.runge_kutta import stage_buffer
from ..retcodes import ReturnCode
from .floats import FLOATS
from .rosenbrock import small_rosenbrock_step

__all__ = ["SmallDynamicSS", "SmallDynamicSSState", "SmallStiffDynamicSS", "SmallStiffState"]

_np = backend.host_numpy()
_FLAGS: dict = {}


def _flag(code: int):
    """A shared read-only ``(1,)`` int32 flag (the driver reads ``flag[0]``)."""
    if code not in _FLAGS:
        a = _np.full((1,), code, dtype=_np.int32)
        a.flags.writeable = False
        _FLAGS[code] = a
    return _FLAGS[code]


_RUNNING, _TIMELIMIT, _STALLED = _flag(0), _flag(ReturnCode.TimeLimit.code), _flag(ReturnCode.Stalled.code)
_DIVERGED = _flag(ReturnCode.Diverged.code)


class _Setup:
    """What one solve fixes: the field on float times, the workspace, the local tolerances, the time limit.
    Not an array leaf: the driver passes it through untouched."""

    __slots__ = ("field", "work", "reltol", "abstol", "tmax", "timed", "limit")

    def __init__(self, field, work, reltol, abstol, tmax, timed, limit):
        self.field, self.work, self.reltol, self.abstol, self.tmax, self.timed = field, work, reltol, abstol, tmax, timed
        self.limit = limit


class SmallDynamicSSState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, n) du/dt at (t, u)
    t: float
    h: float  # next step size to try
    err_prev: float  # PI controller memory
    rejected: bool
    naccept: int
    nreject: int
    flag: Any  # (1,) int32: TimeLimit when t reached tmax, Stalled on step-size underflow
    nf: int
    njvp: int
    nvjp: int
    watch: Watch  # of Python ints and floats
    setup: _Setup


@dataclass(frozen=True)
class SmallDynamicSS(Algorithm):
    """The one-system twin of ``alg`` (an explicit Runge-Kutta ``DynamicSS``)."""

    alg: DynamicSS

    stall_patience = DynamicSS.stall_patience
    sign_sensitive = DynamicSS.sign_sensitive
    freeze_converged = DynamicSS.freeze_converged

    def init(self, prob, u0, ctx):
        alg = self.alg
        timed = ctx.kind == "steady_state"
        reltol, abstol = alg.local_tolerances(ctx)
        tmax, t0 = alg.time_limit(ctx), float(alg.t0)
        field = _field(ctx)
        fu = field(t0, u0) if timed else ctx.fu0  # solve() evaluated f(u0, p, inf)
        h, nf0 = first_step(FLOATS, alg.integrator.tableau, alg.controller, field, t0, u0, fu, reltol, abstol,
                            alg.dt0, tmax)
        setup = _Setup(field, stage_buffer(ctx.xp, alg.integrator.tableau, u0), reltol, abstol, tmax, timed,
                       alg.stability_limit())
        return SmallDynamicSSState(u=u0, fu=fu, t=t0, h=h, err_prev=1e-4, rejected=False, naccept=0, nreject=0,
                                   flag=_RUNNING, nf=1 + timed + nf0, njvp=0, nvjp=0,
                                   watch=new_watch(FLOATS, fu, 0), setup=setup)

    def step(self, prob, state, ctx):
        s, alg = state.setup, self.alg
        a = attempt(FLOATS, alg.integrator.tableau, alg.controller, s.field, state.t, state.h, state.u, state.fu,
                    state.err_prev, state.rejected, s.reltol, s.abstol, s.tmax, time_dependent=s.timed, work=s.work,
                    stiffness=True)
        w, stop, away = watch(FLOATS, state.watch, a.accept, field_rms(FLOATS, a.fu), a.hrho, s.limit, alg.patience,
                              state.naccept + a.accept)
        flag = _DIVERGED if away else _STALLED if a.underflow or stop else (_TIMELIMIT if a.reached else state.flag)
        return SmallDynamicSSState(
            u=a.u, fu=a.fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected,
            naccept=state.naccept + a.accept, nreject=state.nreject + (not a.accept), flag=flag,
            nf=state.nf + a.rk.nf, njvp=state.njvp, nvjp=state.nvjp, watch=w, setup=s,
        )

    def residual_jvp(self, ctx, state, v):
        """As :meth:`DynamicSS.residual_jvp`: a forward difference of the field at the state's time."""
        if ctx.kind != "steady_state":
            return super().residual_jvp(ctx, state, v)
        field = state.setup.field
        return fd_jvp(ctx.xp, lambda u: field(state.t, u))(state.u, v, state.fu), 1

    def failure_hint(self, state, codes):
        return watch_hint(state.watch, codes, self.alg.patience, self.alg.stability_limit())

    def extra_stats(self, state) -> dict:
        return {"naccept": state.naccept, "nreject": state.nreject, "t": _np.float64(state.t)}


class _StiffSetup(_Setup):
    """:class:`_Setup` and the W-solver, the sparse Jacobians (or None) and the Jacobian's source."""

    __slots__ = ("ws", "sj", "jac")


class SmallStiffState(NamedTuple):
    u: Any
    fu: Any
    t: float
    h: float
    err_prev: float
    rejected: bool
    naccept: int
    nreject: int
    flag: Any
    nf: int
    njvp: int
    nvjp: int
    watch: Watch
    setup: _StiffSetup
    J: Any  # the field's Jacobian at u: (1, n, n), or (1, nnz) values on the sparse pattern
    njac: int
    nfact: int
    nsolve: int


@dataclass(frozen=True)
class SmallStiffDynamicSS(SmallDynamicSS):
    """The one-system twin of ``alg`` (a Rosenbrock ``DynamicSS``)."""

    def init(self, prob, u0, ctx):
        alg = self.alg
        method = alg.integrator
        timed = ctx.kind == "steady_state"
        reltol, abstol = alg.local_tolerances(ctx)
        tmax, t0 = alg.time_limit(ctx), float(alg.t0)
        field = _field(ctx)
        fu = field(t0, u0) if timed else ctx.fu0
        h, nf0 = first_step(FLOATS, method.tableau, alg.controller, field, t0, u0, fu, reltol, abstol, alg.dt0, tmax)
        ls = method.linsolve
        probes = sparse_probe(ctx, prob, u0, fu)[1] if ls is None or ls.jacobian == "sparse" else 0
        ws, sj = w_solver(method, ctx, u0)
        setup = _StiffSetup(field, None, reltol, abstol, tmax, timed, 0.0)
        setup.ws, setup.sj = ws, sj
        setup.jac = _jacobian_source(ctx, prob, method, sj, field, timed)
        return SmallStiffState(u=u0, fu=fu, t=t0, h=h, err_prev=1e-4, rejected=False, naccept=0, nreject=0,
                               flag=_RUNNING, nf=1 + timed + nf0, njvp=0, nvjp=0,
                               watch=new_watch(FLOATS, fu, 0), setup=setup, J=None, njac=probes, nfact=0,
                               nsolve=0)

    def step(self, prob, state, ctx):
        s, alg = state.setup, self.alg
        J, njac, nprod = state.J, state.njac, 0
        if not state.rejected or J is None:  # a rejected attempt leaves u: its retry reuses J
            J, nprod = s.jac(state.t, state.u, state.fu)
            njac += 1
        Jw = J if s.sj is None else SparseRows(J, s.sj.pattern)
        a = rosenbrock_attempt(FLOATS, alg.integrator, alg.controller, s.field, Jw, state.t, state.h, state.u,
                               state.fu, state.err_prev, state.rejected, s.reltol, s.abstol, s.tmax,
                               time_dependent=s.timed, ws=s.ws, step=small_rosenbrock_step)
        u, fu, flag = a.u, a.fu, state.flag
        if a.accept:  # long L-stable steps converge like Newton's method, onto unstable equilibria too
            if s.sj is None:
                bad = unstable_equilibrium(ctx, u, fu, J) if _near(ctx, u, fu, J) else None
            else:
                bad = unstable_sparse(ctx, u, fu, Jw)
            if bad is not None and bool(bad[0]):
                u, fu, flag = state.u, state.fu, _DIVERGED
        w, stop, away = watch(FLOATS, state.watch, a.accept, field_rms(FLOATS, fu), None, 0.0, alg.patience,
                              state.naccept + a.accept)
        if flag is not _DIVERGED:
            flag = _DIVERGED if away else _STALLED if a.underflow or stop else (_TIMELIMIT if a.reached else flag)
        r = a.rk
        return SmallStiffState(
            u=u, fu=fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected, naccept=state.naccept + a.accept,
            nreject=state.nreject + (not a.accept), flag=flag, nf=state.nf + r.nf + ctx.f_calls(nprod),
            njvp=state.njvp + nprod, nvjp=state.nvjp, watch=w, setup=s, J=J, njac=njac,
            nfact=state.nfact + r.nfact, nsolve=state.nsolve + r.nsolve,
        )

    def extra_stats(self, state) -> dict:
        return {**super().extra_stats(state), **stiff_stats(state)}


def _jacobian_source(ctx, prob, method, sj, field, timed):
    """``(t, u, fu) -> (J, products)``: the dense Jacobian (of ``f(., p, t)`` at the state's time for a
    non-autonomous method without the problem's ``jac`` / ``jvp``), or the sparse values."""
    at_time = timed and not method.autonomous and prob.jac is None and prob.jvp is None
    if sj is not None:
        if not at_time:
            return lambda t, u, fu: sj.at(u, fu)
        return lambda t, u, fu: sparse_source(sj, Products(ctx.xp, lambda v: field(t, v))).at(u, fu)
    if not at_time:
        return lambda t, u, fu: ctx.jacobian(u, fu)
    return lambda t, u, fu: Products(ctx.xp, lambda v: field(t, v)).jacobian(u, fu)


def _field(ctx):
    """The vector field ``field(t: float | None, u (1, n))``; the user's ``f`` sees ``t`` as a 0-d array of
    the state's dtype."""
    if ctx.kind != "steady_state":
        return lambda t, u: ctx.vector_field(u, None)
    vf, dt = ctx.vector_field, ctx.dtype
    return lambda t, u: vf(u, _np.asarray(t, dtype=dt))


def _near(ctx, u, fu, J) -> bool:
    """The twin's prefilter of the stability check, in host floats: whether the ``(1, n)`` row ``u`` is near
    the tolerance as ``unstable_equilibrium`` judges it (dense ``J`` ``(1, n, n)``); True when it cannot
    tell (no host norm, ``ctx.host_norm``): the full check then decides."""
    hn = ctx.host_norm
    if hn is None:
        return True
    scale = max(hn(u), hn(J[0] @ u[0]))
    return hn(fu) <= NEAR * max(ctx.reltol * scale, ctx.abstol)
