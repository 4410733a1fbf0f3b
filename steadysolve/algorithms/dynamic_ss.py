"""DynamicSS: integrate du/dt = f(u) with an adaptive Runge-Kutta or Rosenbrock method until f vanishes.

One driver iteration is one *attempted* step (accepted or rejected), so
``maxiters`` counts steps. The state's ``fu`` is du/dt at ``state.u`` (the FSAL
stage of the last accepted step), so the driver's convergence test
``norm(fu) <= max(abstol, reltol * norm(u))`` is exactly the steady-state test and
costs no extra evaluation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from .. import _backend as backend
from .._backend.derivatives import fd_jvp
from ..ode._elements import elements
from ..ode.adaptive import attempt, first_step, time_dtype
from ..ode.controller import PIController
from ..ode.runge_kutta import stage_buffer
from ..ode.tsit5 import ExplicitRK, Tsit5
from ..registry import register
from ..retcodes import ReturnCode
from .._checks import check_int, check_positive
from ._dynamic_stiff import Rosenbrock, stiff_attempt, stiff_stats, stiff_tolerances, stiff_work
from ._stability import DIVERGED
from .base import Algorithm

__all__ = ["DynamicSS", "DynamicSSState", "Watch", "watch", "new_watch", "watch_hint", "field_rms"]

LOCAL_TOL_FACTOR = 0.1
_TIMELIMIT = ReturnCode.TimeLimit.code
_STALLED = ReturnCode.Stalled.code
#: accepted steps in a row at an explicit method's stability limit, without the residual halving,
#: that stop it (a stiff problem)
STIFF_STEPS = 25
#: ``h |lambda|`` above this fraction of the method's stability limit counts as a step at the limit
STIFF_FRACTION = 0.8
#: a watched element stopped with its residual this many times the value at its last halving has left
#: its start (Diverged)
AWAY = 4.0
#: ``patience`` counts the accepted steps on which the residual did not fall, since it last fell below this
#: fraction of its best value. A steady descent, however slow (HIRES's plateau under a second-order
#: method: ~1,400 steps, each lowering the residual by ~1e-4 of itself, after a rise above an earlier
#: minimum), never counts; a limit cycle's residual rises on every turn without beating the minimum of
#: its first, and a flow leaving its start rises on every step
PROGRESS = 0.99
STIFF_HINT = ("DynamicSS stopped at its explicit method's stability limit: the problem is stiff (the step is held "
              "at ~{:.1f} / |lambda_max| while the residual hardly falls). Use a stiff integrator, "
              "DynamicSS(ss.Rodas5P()), or ss.PseudoTransient()")
SETTLE_HINT = ("DynamicSS stopped: the residual rose on `patience` accepted steps without falling 1% below its best; "
               "the flow does not settle (a limit cycle, or an equilibrium that is not stable), or wanders too "
               "long for this patience (DynamicSS(patience=...))")


class Watch(NamedTuple):
    """What ``DynamicSS`` watches besides the verdict, per element: whether the flow still settles."""

    nstiff: Any  # accepted steps in a row at the stability limit (explicit methods)
    since: Any  # accepted steps since the residual last halved
    ref: Any  # the residual's RMS when it last halved
    flat: Any  # accepted steps on which the residual did not fall, since it last fell below PROGRESS * best
    best: Any  # the residual's RMS when it last did
    last: Any  # the residual's RMS after the last accepted step


def watch(el, w: Watch, accept, fnorm, hrho, limit: float, patience, naccept):
    """``(watch, stop, away)``: the watch after an attempt (``fnorm`` the RMS of the state's field, ``hrho`` the
    step's ``h |lambda|`` estimate, None for a Rosenbrock method) and the elements to stop with
    ``Stalled``: at an explicit method's stability ``limit`` for ``STIFF_STEPS`` accepted steps in a row
    without the residual halving (a stiff problem; a non-stiff flow reaches the limit too, as its steps
    grow, but its residual then halves every few steps), or ``patience`` accepted steps on which the
    residual did not fall, with no step taking it below ``PROGRESS`` times its best value in between
    (a flow that does not settle; a slow monotone descent is progress). ``away``: the stopped elements whose residual never
    halved in their ``naccept`` accepted steps and has grown ``AWAY`` times, a flow that leaves its start
    (an unstable equilibrium, a blow-up): ``Diverged``, not ``Stalled`` (a limit cycle's field, which
    rises and falls, has halved on the way to the cycle). Written against the per-element namespace ``el`` (arrays,
    or one system's floats)."""
    halved = accept & (fnorm <= 0.5 * w.ref)
    since = el.where(accept, el.where(halved, 0, w.since + 1), w.since)
    ref = el.where(halved, fnorm, w.ref)
    better = accept & (fnorm <= PROGRESS * w.best)
    flat = el.where(accept, el.where(better, 0, el.where(fnorm < w.last, w.flat, w.flat + 1)), w.flat)
    best = el.where(better, fnorm, w.best)
    last = el.where(accept, fnorm, w.last)
    nstiff = w.nstiff
    if hrho is not None:
        nstiff = el.where(accept, el.where(hrho >= STIFF_FRACTION * limit, nstiff + 1, 0), nstiff)
    stop = (nstiff >= STIFF_STEPS) & (since >= STIFF_STEPS)
    if patience is not None:
        stop = stop | (flat >= patience)
    return Watch(nstiff, since, ref, flat, best, last), stop, stop & (since >= naccept) & (fnorm > AWAY * ref)


class DynamicSSState(NamedTuple):
    u: Any  # (B, n)
    fu: Any  # (B, n) du/dt at (t, u)
    t: Any  # (B,) time of each element
    h: Any  # (B,) next step size to try
    err_prev: Any  # (B,) PI controller memory
    rejected: Any  # (B,) bool: the last attempt was rejected
    naccept: Any  # (B,) int32
    nreject: Any  # (B,) int32
    flag: Any  # (B,) int32: TimeLimit when t reached tmax, Stalled on step-size underflow
    nf: Any
    njvp: Any
    nvjp: Any
    watch: Any = None  # Watch: does the flow still settle
    ws: Any = None  # the stage workspace (``ode.runge_kutta.Stages``; None under JAX and for a Rosenbrock method)
    lin: Any = None  # a Rosenbrock integrator's Jacobian and linear-algebra counts (_dynamic_stiff.StiffWork)


@register("dynamic_ss")
@dataclass(frozen=True)
class DynamicSS(Algorithm):
    """Time-step ``du/dt = f(u, p, t)`` to its steady state with an adaptive explicit RK or Rosenbrock pair.

    The vector field is the problem's ``f(u, p, t)`` for a ``SteadyStateProblem`` and the
    residual (``f(u, p)``, or ``g(u, p) - u``) otherwise; it must be *stable* at the
    steady state (for ``du/dt = -F`` write the problem with the sign flipped).

    Parameters
    ----------
    integrator
        An explicit Runge-Kutta method (``Tsit5``, the default) or, for stiff systems, a Rosenbrock
        method (``Rodas5P``, ...; ``stats`` then add ``njac``, ``nfact`` and ``nsolve``).
    controller
        ``PIController``; its ``reltol`` / ``abstol`` default to a tenth of the
        solve's ``reltol`` / ``abstol`` (with ``reltol = 0`` the local error is controlled
        absolutely).
    tmax
        The integration stops with ``ReturnCode.TimeLimit`` when ``t`` reaches it
        before a steady state (the last step is clipped to land on ``tmax``). ``inf``
        is allowed; ``t`` is then still capped far below overflow.
    t0
        Start time.
    dt0
        First step; ``None`` picks it automatically (one extra evaluation).
    per_element_time
        Batched solves give every element its own ``t`` and step size.
        By default a ``SteadyStateProblem``'s ``f(u, p, t)`` receives one 0-d time, the
        smallest stage time over the batch (exact for unbatched solves; irrelevant for
        autonomous problems). With ``per_element_time=True`` it receives the ``(B,)``
        array of per-element stage times instead.
    compile_jax
        With concrete (eager) JAX arrays, let the driver compile the step once per
        solve with ``jax.jit`` (op-by-op dispatch of the ~300 array operations of a step is
        slow); if ``f`` cannot be traced the solve falls back to op-by-op execution. Inside
        ``jax.jit`` / ``vmap`` the whole solve is traced anyway.
    patience
        Stop with ``ReturnCode.Stalled`` after this many accepted steps on which the residual did not
        fall, counted since it last fell 1% below its best value (a limit cycle, a flow leaving an
        unstable equilibrium); a steady descent, however slow, is never stopped. ``None``: no watch.

    Notes
    -----
    Each attempted step counts as one iteration (``maxiters`` caps accepted plus
    rejected steps) and costs 6 evaluations for Tsit5 (FSAL). ``sol.stats`` has
    ``naccept``, ``nreject`` and ``t`` (per element when batched).

    Raises
    ------
    ValueError
        An invalid option (``tmax <= 0``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.SteadyStateProblem(lambda u, p, t: -(u - 2.0), np.zeros(1))
    >>> sol = ss.solve(prob, ss.DynamicSS(ss.Tsit5()), abstol=1e-8)
    >>> sol.retcode.name, np.round(sol.u, 6), sol.stats.naccept > 0
    ('Success', array([2.]), True)
    """

    integrator: ExplicitRK = field(default_factory=Tsit5)
    controller: PIController = field(default_factory=PIController)
    tmax: float = math.inf
    t0: float = 0.0
    dt0: Optional[float] = None
    per_element_time: bool = False
    compile_jax: bool = True
    patience: Optional[int] = 300

    stall_patience = None  # transients need not decrease the residual monotonically
    sign_sensitive = True
    freeze_converged = True  # naccept, nreject and t are per-element statistics

    def __post_init__(self):
        if not isinstance(self.integrator, (ExplicitRK, Rosenbrock)):
            raise TypeError(f"DynamicSS: integrator must be an explicit Runge-Kutta method such as Tsit5() or a "
                            f"Rosenbrock method such as Rodas5P(), got {type(self.integrator).__name__}")
        if not isinstance(self.controller, PIController):
            raise TypeError(f"DynamicSS: controller must be a PIController, got {type(self.controller).__name__}")
        if isinstance(self.t0, bool) or not isinstance(self.t0, (int, float)) or not math.isfinite(self.t0):
            raise ValueError(f"DynamicSS: t0 must be a finite number, got {self.t0!r}")
        check_positive("DynamicSS", "tmax", self.tmax, allow_inf=True)
        if self.tmax <= self.t0:
            raise ValueError(f"DynamicSS: tmax ({self.tmax}) must be greater than t0 ({self.t0})")
        check_positive("DynamicSS", "dt0", self.dt0, allow_none=True)
        if not isinstance(self.per_element_time, bool):
            raise TypeError("DynamicSS: per_element_time must be a bool")
        if not isinstance(self.compile_jax, bool):
            raise TypeError("DynamicSS: compile_jax must be a bool")
        if self.patience is not None:
            check_int("DynamicSS", "patience", self.patience, 1)

    # -- helpers -------------------------------------------------------------------------
    def _field(self, ctx):
        xp = ctx.xp
        if ctx.kind != "steady_state":
            return lambda t, u: ctx.vector_field(u, None)
        dt = ctx.dtype  # the user's f sees times in the state's dtype
        if self.per_element_time:
            return lambda t, u: ctx.vector_field(u, backend.cast(xp, xp.reshape(t, (t.shape[0],)), dt))
        if ctx.batch == 1:
            return lambda t, u: ctx.vector_field(u, backend.cast(xp, xp.reshape(t, ()), dt))
        return lambda t, u: ctx.vector_field(u, backend.cast(xp, xp.min(t), dt))

    def residual_jvp(self, ctx, state, v):
        """The residual is the vector field at the state's time (``F(u)`` is the field at ``t = inf``):
        a forward difference of the field at that time (one evaluation)."""
        if ctx.kind != "steady_state":
            return super().residual_jvp(ctx, state, v)
        field = self._field(ctx)
        tb = ctx.batched(state.t)
        return fd_jvp(ctx.xp, lambda u: field(tb, u))(state.u, v, state.fu), 1

    def local_tolerances(self, ctx):
        """The controller's local-error ``(reltol, abstol)`` in this solve."""
        # Local-error tolerances a tenth of the steady-state ones unless the controller sets
        # them: an explicit method can settle at its stability boundary with a residual of the
        # order of its local tolerance, which must stay below the steady-state tolerance.
        # In half precision the local error estimate cannot go below rounding: floor the
        # relative local tolerance at a few units of the dtype's eps.
        if isinstance(self.integrator, Rosenbrock):  # L-stable: no stability boundary to settle at
            return stiff_tolerances(self.controller, ctx)
        floor = 4 * float(ctx.xp.finfo(ctx.dtype).eps) if backend.is_half(ctx.xp, ctx.dtype) else 0.0
        return self.controller.tolerances(max(LOCAL_TOL_FACTOR * ctx.reltol, floor), LOCAL_TOL_FACTOR * ctx.abstol)

    def time_limit(self, ctx) -> float:
        """``tmax``, capped far below overflow of the clock (runs that drift to t ~ 1e307 end in NaN)."""
        return min(float(self.tmax), 1e-3 * float(ctx.xp.finfo(time_dtype(ctx.xp, ctx.dtype)).max))

    # -- contract ------------------------------------------------------------------------
    def init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        tab = self.integrator.tableau
        reltol, abstol = self.local_tolerances(ctx)
        stiff = isinstance(self.integrator, Rosenbrock)
        f = self._field(ctx)
        t = xp.full((B,), float(self.t0), dtype=time_dtype(xp, ctx.dtype), device=ctx.device)
        nf = 1  # F(u0), evaluated by solve()
        if ctx.kind == "steady_state":  # solve() evaluated f(u0, p, inf); we need f(u0, p, t0)
            fu = f(ctx.batched(t), u0)
            nf += 1
        else:
            fu = ctx.fu0
        h, nf0 = first_step(elements(xp), tab, self.controller, f, t, u0, fu, reltol, abstol, self.dt0,
                            self.time_limit(ctx))
        ws = None if backend.is_jax(xp) or stiff else stage_buffer(xp, tab, u0)
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        return DynamicSSState(
            u=u0, fu=fu, t=t, h=h, err_prev=xp.full_like(t, 1e-4), rejected=zi != 0,
            naccept=zi, nreject=zi, flag=zi,
            nf=ctx.counter(nf + nf0), njvp=ctx.counter(0), nvjp=ctx.counter(0),
            watch=new_watch(elements(xp), fu, zi), ws=ws, lin=stiff_work(ctx, prob, self.integrator, u0, fu) if stiff else None,
        )

    def step(self, prob, state, ctx):
        xp = ctx.xp
        reltol, abstol = self.local_tolerances(ctx)
        el = elements(xp)
        a, lin, njvp, nfj = stiff_attempt(self, prob, state, ctx, reltol, abstol) if state.lin is not None else (
            attempt(el, self.integrator.tableau, self.controller, self._field(ctx), state.t, state.h,
                    state.u, state.fu, state.err_prev, state.rejected, reltol, abstol, self.time_limit(ctx),
                    time_dependent=ctx.kind == "steady_state", work=state.ws, stiffness=True), None, 0, 0)
        acc = xp.astype(a.accept, state.naccept.dtype)
        w, stop, away = watch(el, state.watch, a.accept, field_rms(el, a.fu), a.hrho, self.stability_limit(),
                              self.patience, state.naccept + acc)
        flag = xp.where(a.reached, xp.full_like(state.flag, _TIMELIMIT), state.flag)
        flag = xp.where(a.underflow | stop, xp.full_like(state.flag, _STALLED), flag)
        flag = xp.where(away, xp.full_like(flag, DIVERGED), flag)
        if lin is not None and lin.unstable is not None:  # a long step onto an equilibrium the flow leaves
            flag = xp.where(lin.unstable, xp.full_like(flag, DIVERGED), flag)
        return DynamicSSState(
            u=a.u, fu=a.fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected,
            naccept=state.naccept + acc, nreject=state.nreject + (1 - acc),
            flag=flag, nf=state.nf + a.rk.nf + nfj, njvp=state.njvp + njvp, nvjp=state.nvjp, watch=w, ws=state.ws, lin=lin,
        )

    def cost(self, n: int) -> int:  # a Rosenbrock step: its stages, df/dt and a dense Jacobian
        return self.integrator.tableau.stages + 1 + n if isinstance(self.integrator, Rosenbrock) else self.integrator.tableau.new_evaluations

    def setup_cost(self) -> int:  # f(u0), and one more for the automatic first step
        return 2 if self.dt0 is None else 1

    def under_budget(self, reltol: float = 0.0) -> "DynamicSS":
        # a DEQ needs the steady state, not an accurate transient: a local error of the solve's own tolerance
        # (not a tenth of it) and a unit first step (which also saves one evaluation) reach a far smaller
        # residual within a budget than the default control; a looser local error (10x) took steps at the
        # stability limit whose residual settled higher, and trained 1-1.5 points worse (docs/benchmarks.md)
        ctl = self.controller
        if ctl.reltol is not None or ctl.abstol is not None or reltol <= 0:
            return self
        ctl = dataclasses.replace(ctl, reltol=reltol, abstol=reltol)
        return dataclasses.replace(self, controller=ctl, dt0=1.0 if self.dt0 is None else self.dt0)

    def stability_limit(self) -> float:
        """The explicit method's stability limit on the negative real axis (0 for a Rosenbrock method)."""
        return 0.0 if isinstance(self.integrator, Rosenbrock) else self.integrator.tableau.stability_limit

    def failure_hint(self, state, codes):
        return watch_hint(state.watch, codes, self.patience, self.stability_limit())

    def extra_stats(self, state) -> dict:
        return {**self._time_stats(state), **stiff_stats(state.lin)}

    def _time_stats(self, state) -> dict:
        per = {"naccept": state.naccept, "nreject": state.nreject, "t": state.t}
        if state.t.shape[0] == 1:
            xp = backend.namespace(("t", state.t))
            return {k: xp.reshape(v, ()) for k, v in per.items()}
        return per


def watch_hint(w: Watch, codes, patience, limit: float):
    """Why the watch stopped an element that ended ``Stalled`` (``codes``: the per-element codes), or None.
    The driver keeps the state before a stopping step: there the counts were one step short."""
    np = backend.host_numpy()
    stalled = np.asarray([int(c) == _STALLED for c in codes])
    if not stalled.any():
        return None
    nstiff, since, flat = (np.asarray(backend.to_numpy(backend.namespace(("w", x)), x) if backend.is_array(x) else x)
                           .reshape(-1) for x in (w.nstiff, w.since, w.flat))
    if (stalled & (nstiff >= STIFF_STEPS - 1) & (since >= STIFF_STEPS - 1)).any():
        return STIFF_HINT.format(limit)
    if patience is not None and (stalled & (flat >= patience - 1)).any():
        return SETTLE_HINT
    return None


def new_watch(el, fu, zero):
    """The watch at the start (``zero``: ``(B,)`` int zeros, or ``0`` for one system's floats)."""
    r = field_rms(el, fu)
    return Watch(zero, zero, r, zero, r, r)


def field_rms(el, fu):
    """The RMS of the field per element (what :func:`watch` follows)."""
    return el.sqrt(el.row_sumsq(fu) / fu.shape[1])
