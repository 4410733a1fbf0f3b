"""DynamicSS: integrate du/dt = f(u) in time with an adaptive explicit Runge-Kutta
method until the vector field vanishes.

One driver iteration is one *attempted* step (accepted or rejected), so
``maxiters`` counts steps. The state's ``fu`` is du/dt at ``state.u`` (the FSAL
stage of the last accepted step), so the driver's convergence test
``norm(fu) <= max(abstol, reltol * norm(u))`` is exactly the steady-state test and
costs no extra evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from .. import backend
from ..ode.controller import PIController, attempt_step, error_norm, initial_step
from ..ode.runge_kutta import rk_step
from ..ode.tsit5 import ExplicitRK, Tsit5
from ..registry import register
from ..solution import ReturnCode
from .base import Algorithm, check_positive

__all__ = ["DynamicSS", "DynamicSSState"]

LOCAL_TOL_FACTOR = 0.1
_TIMELIMIT = ReturnCode.TimeLimit.code
_STALLED = ReturnCode.Stalled.code


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


@register("dynamic_ss")
@dataclass(frozen=True)
class DynamicSS(Algorithm):
    """Time-step ``du/dt = f(u, p, t)`` to its steady state with an adaptive explicit RK pair.

    The vector field is the problem's ``f(u, p, t)`` for a ``SteadyStateProblem`` and the
    residual (``f(u, p)``, or ``g(u, p) - u``) otherwise; it must be *stable* at the
    steady state (for ``du/dt = -F`` write the problem with the sign flipped).

    Parameters
    ----------
    integrator : an explicit Runge-Kutta method (:class:`Tsit5`, the default).
    controller : :class:`PIController`; its ``rtol`` / ``atol`` default to a tenth of the
        solve's ``reltol`` / ``abstol`` (with ``reltol = 0`` the local error is controlled
        absolutely).
    tmax : the integration stops with ``ReturnCode.TimeLimit`` when ``t`` reaches it
        before a steady state (the last step is clipped to land on ``tmax``). ``inf``
        is allowed; ``t`` is then still capped far below overflow.
    t0 : start time.
    dt0 : first step; ``None`` picks it automatically (one extra evaluation).
    per_element_time : batched solves give every element its own ``t`` and step size.
        By default a ``SteadyStateProblem``'s ``f(u, p, t)`` receives one 0-d time, the
        smallest stage time over the batch (exact for unbatched solves; irrelevant for
        autonomous problems). With ``per_element_time=True`` it receives the ``(B,)``
        array of per-element stage times instead.
    compile_jax : with concrete (eager) JAX arrays, compile the step once per solve with
        ``jax.jit`` (op-by-op dispatch of the ~300 array operations of a step is slow);
        if ``f`` cannot be traced the solve falls back to op-by-op execution. Inside
        ``jax.jit`` / ``vmap`` the whole solve is traced anyway.

    Each attempted step counts as one iteration (``maxiters`` caps accepted plus
    rejected steps) and costs 6 evaluations for Tsit5 (FSAL). ``sol.stats`` has
    ``naccept``, ``nreject`` and ``t`` (per element when batched).
    """

    integrator: ExplicitRK = field(default_factory=Tsit5)
    controller: PIController = field(default_factory=PIController)
    tmax: float = math.inf
    t0: float = 0.0
    dt0: Optional[float] = None
    per_element_time: bool = False
    compile_jax: bool = True

    stall_patience = None  # transients need not decrease the residual monotonically
    freeze_converged = True  # naccept, nreject and t are per-element statistics

    def __post_init__(self):
        if not isinstance(self.integrator, ExplicitRK):
            raise TypeError(f"DynamicSS: integrator must be an explicit Runge-Kutta method such as "
                            f"Tsit5(), got {type(self.integrator).__name__}")
        if not isinstance(self.controller, PIController):
            raise TypeError(f"DynamicSS: controller must be a PIController, got {type(self.controller).__name__}")
        if isinstance(self.t0, bool) or not isinstance(self.t0, (int, float)) or not math.isfinite(self.t0):
            raise ValueError(f"DynamicSS: t0 must be a finite number, got {self.t0!r}")
        check_positive("DynamicSS", "tmax", self.tmax)
        if self.tmax <= self.t0:
            raise ValueError(f"DynamicSS: tmax ({self.tmax}) must be greater than t0 ({self.t0})")
        check_positive("DynamicSS", "dt0", self.dt0, allow_none=True)
        if not isinstance(self.per_element_time, bool):
            raise TypeError("DynamicSS: per_element_time must be a bool")
        if not isinstance(self.compile_jax, bool):
            raise TypeError("DynamicSS: compile_jax must be a bool")

    # -- helpers -------------------------------------------------------------------------
    def _field(self, ctx):
        xp = ctx.xp
        if ctx.kind != "steady_state":
            return lambda t, u: ctx.vector_field(u, None)
        if self.per_element_time:
            return lambda t, u: ctx.vector_field(u, xp.reshape(t, (t.shape[0],)))
        if ctx.batch == 1:
            return lambda t, u: ctx.vector_field(u, xp.reshape(t, ()))
        return lambda t, u: ctx.vector_field(u, xp.min(t))

    def _tolerances(self, ctx):
        # Local-error tolerances a tenth of the steady-state ones unless the controller sets
        # them: an explicit method can settle at its stability boundary with a residual of the
        # order of its local tolerance, which must stay below the steady-state tolerance.
        return self.controller.tolerances(LOCAL_TOL_FACTOR * ctx.reltol, LOCAL_TOL_FACTOR * ctx.abstol)

    def _tmax(self, ctx) -> float:
        # Never let t run into overflow (runs that drift to t ~ 1e307 end in NaN).
        return min(float(self.tmax), 1e-3 * float(ctx.xp.finfo(ctx.dtype).max))

    # -- contract ------------------------------------------------------------------------
    def init(self, prob, u0, ctx):
        return self._maybe_compiled("init", self._init, prob, u0, ctx)

    def _init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        tab = self.integrator.tableau
        f = self._field(ctx)
        rtol, atol = self._tolerances(ctx)
        t = xp.full((B,), float(self.t0), dtype=ctx.dtype, device=ctx.device)
        nf = 1  # F(u0), evaluated by solve()
        if ctx.kind == "steady_state":  # solve() evaluated f(u0, p, inf); we need f(u0, p, t0)
            fu = f(ctx.batched(t), u0)
            nf += 1
        else:
            fu = ctx.fu0
        if self.dt0 is None:
            h = initial_step(xp, f, ctx.batched(t), u0, fu, tab.order, rtol, atol)
            nf += 1
        else:
            h = xp.full((B,), float(self.dt0), dtype=ctx.dtype, device=ctx.device)
        if self.controller.dtmax is not None:
            h = xp.minimum(h, xp.full_like(h, self.controller.dtmax))
        h = xp.minimum(h, self._tmax(ctx) - t)
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        return DynamicSSState(
            u=u0, fu=fu, t=t, h=h, err_prev=xp.full_like(t, 1e-4), rejected=zi != 0,
            naccept=zi, nreject=zi, flag=zi,
            nf=ctx.counter(nf), njvp=ctx.counter(0), nvjp=ctx.counter(0),
        )

    def step(self, prob, state, ctx):
        return self._maybe_compiled("step", self._step, prob, state, ctx)

    def _maybe_compiled(self, name, fn, prob, x, ctx):
        """Run ``fn(prob, x, ctx)``; with concrete JAX arrays compile it once per solve."""
        if not (self.compile_jax and backend.is_jax(ctx.xp) and not backend.is_traced(x)):
            return fn(prob, x, ctx)
        import jax

        key = "_dynamic_ss_" + name  # the context lives for one solve: one compilation per solve
        compiled = ctx.__dict__.get(key)
        if compiled is None:
            compiled = jax.jit(lambda y: fn(prob, y, ctx))
            ctx.__dict__[key] = compiled
        if compiled is not False:
            try:
                return compiled(x)
            except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                    jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError):
                ctx.__dict__[key] = False  # f cannot be traced: run op by op
        return fn(prob, x, ctx)

    def _step(self, prob, state, ctx):
        xp = ctx.xp
        tab = self.integrator.tableau
        rtol, atol = self._tolerances(ctx)
        tmax = self._tmax(ctx)
        h = state.h
        t_stage = ctx.batched(state.t) if ctx.kind == "steady_state" else None  # others ignore t
        r = rk_step(tab, self._field(ctx), t_stage, state.u, ctx.batched(h), state.fu)
        finite = xp.all(xp.isfinite(r.u), axis=1) & xp.all(xp.isfinite(r.f), axis=1)
        enorm = error_norm(xp, r.err, state.u, r.u, rtol, atol)
        a = attempt_step(self.controller, xp, tab.order, tab.error_order, h, enorm, state.err_prev,
                         state.rejected, finite)
        acc = a.accept
        acc2 = ctx.batched(acc)
        u = xp.where(acc2, r.u, state.u)
        fu = xp.where(acc2, r.f, state.fu)
        t_new = state.t + h
        # Land exactly on tmax with the last step.
        t_new = xp.where(h >= tmax - state.t, xp.full_like(t_new, tmax), t_new)
        t = xp.where(acc, t_new, state.t)
        h_next = xp.minimum(a.h_next, xp.maximum(tmax - t, xp.zeros_like(t)))
        reached = acc & (t >= tmax)
        # Step-size underflow: the step no longer changes t (or collapsed on a non-finite field).
        eps = float(xp.finfo(ctx.dtype).eps)
        underflow = ~reached & (h_next <= 4 * eps * xp.maximum(xp.abs(t), xp.ones_like(t)))
        flag = xp.where(reached, xp.full_like(state.flag, _TIMELIMIT), state.flag)
        flag = xp.where(underflow, xp.full_like(state.flag, _STALLED), flag)
        one = xp.ones_like(state.naccept)
        zero = xp.zeros_like(state.naccept)
        return DynamicSSState(
            u=u, fu=fu, t=t, h=h_next, err_prev=a.err_prev, rejected=a.rejected,
            naccept=state.naccept + xp.where(acc, one, zero),
            nreject=state.nreject + xp.where(acc, zero, one),
            flag=flag, nf=state.nf + r.nf, njvp=state.njvp, nvjp=state.nvjp,
        )

    def extra_stats(self, state) -> dict:
        if state.t.shape[0] == 1:
            xp = backend.namespace(("t", state.t))
            return {"naccept": xp.reshape(state.naccept, ()), "nreject": xp.reshape(state.nreject, ()),
                    "t": xp.reshape(state.t, ())}
        return {"naccept": state.naccept, "nreject": state.nreject, "t": state.t}
