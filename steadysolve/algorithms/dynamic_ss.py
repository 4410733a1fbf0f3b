"""DynamicSS: integrate du/dt = f(u) with an adaptive Runge-Kutta or Rosenbrock method until f vanishes.

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

from .. import _backend as backend
from .._backend.derivatives import fd_jvp
from ..ode.adaptive import attempt, first_step, time_dtype
from ..ode.controller import PIController
from ..ode.host import attempt_host, host_buffer, host_path_ok, initial_step_host
from ..ode.host_batch import attempt_batch
from ..ode.runge_kutta import stage_buffer
from ..ode.tsit5 import ExplicitRK, Tsit5
from ..registry import register
from ..retcodes import ReturnCode
from .._checks import check_positive
from ._dynamic_stiff import Rosenbrock, stiff_attempt, stiff_stats, stiff_tolerances, stiff_work
from .base import Algorithm

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
    ws: Any = None  # the stage workspace (a _Workspace on eager backends, None under JAX)
    lin: Any = None  # a Rosenbrock integrator's Jacobian and linear-algebra counts (_dynamic_stiff.StiffWork)


class _Workspace:
    """Holds the ``(stages, B * n)`` stage buffer, written in place by every step. Not an array
    leaf, so the driver's per-element ``where`` passes it through untouched (no step reads
    stages written by an earlier one)."""

    __slots__ = ("K", "host")

    def __init__(self, K, host=None):
        self.K = K
        self.host = host  # unbatched NumPy: (field, reltol, abstol, tmax, time eps), fixed per solve


_HOST_NP = backend.host_numpy()  # the unbatched NumPy path's host scalars and the driver's flags
_FLAGS: dict = {}


def _host_flag(code: int):
    """A shared read-only ``(1,)`` int32 flag array (the driver reads ``flag[0]``)."""
    if code not in _FLAGS:
        a = _HOST_NP.full((1,), code, dtype=_HOST_NP.int32)
        a.flags.writeable = False
        _FLAGS[code] = a
    return _FLAGS[code]


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
        field = self._host_field(ctx) if isinstance(state.t, float) else self._field(ctx)
        return fd_jvp(ctx.xp, lambda u: field(state.t, u))(state.u, v, state.fu), 1

    def _host_mode(self, ctx, abstol: float) -> bool:
        """NumPy: unbatched, the controller runs on Python floats (``ode.host``); batched, the step takes
        its per-element decisions on the host where they are uniform (``ode.host_batch``)."""
        return (ctx.host_arrays and isinstance(self.integrator, ExplicitRK)
                and host_path_ok(self.integrator.tableau, abstol) and not backend.is_half(ctx.xp, ctx.dtype))

    def _time_mode(self, ctx):
        return None if ctx.kind != "steady_state" else ("each" if self.per_element_time else "min")

    def _host_field(self, ctx):
        if ctx.kind != "steady_state":
            return lambda t, u: ctx.vector_field(u, None)
        dt = ctx.dtype
        return lambda t, u: ctx.vector_field(u, _HOST_NP.asarray(t, dtype=dt))

    def _tolerances(self, ctx):
        # Local-error tolerances a tenth of the steady-state ones unless the controller sets
        # them: an explicit method can settle at its stability boundary with a residual of the
        # order of its local tolerance, which must stay below the steady-state tolerance.
        # In half precision the local error estimate cannot go below rounding: floor the
        # relative local tolerance at a few units of the dtype's eps.
        if isinstance(self.integrator, Rosenbrock):  # L-stable: no stability boundary to settle at
            return stiff_tolerances(self.controller, ctx)
        floor = 4 * float(ctx.xp.finfo(ctx.dtype).eps) if backend.is_half(ctx.xp, ctx.dtype) else 0.0
        return self.controller.tolerances(max(LOCAL_TOL_FACTOR * ctx.reltol, floor), LOCAL_TOL_FACTOR * ctx.abstol)

    def _tmax(self, ctx) -> float:
        # Never let t run into overflow (runs that drift to t ~ 1e307 end in NaN).
        return min(float(self.tmax), 1e-3 * float(ctx.xp.finfo(time_dtype(ctx.xp, ctx.dtype)).max))

    # -- contract ------------------------------------------------------------------------
    def init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        tab = self.integrator.tableau
        reltol, abstol = self._tolerances(ctx)
        host, stiff = self._host_mode(ctx, abstol), isinstance(self.integrator, Rosenbrock)
        if host and B == 1:  # the controller on floats, the first step too
            return self._init_host(u0, ctx, tab, reltol, abstol)
        f = self._field(ctx)
        t = xp.full((B,), float(self.t0), dtype=time_dtype(xp, ctx.dtype), device=ctx.device)
        nf = 1  # F(u0), evaluated by solve()
        if ctx.kind == "steady_state":  # solve() evaluated f(u0, p, inf); we need f(u0, p, t0)
            fu = f(ctx.batched(t), u0)
            nf += 1
        else:
            fu = ctx.fu0
        h, nf0 = first_step(xp, tab, self.controller, f, t, u0, fu, reltol, abstol, self.dt0, self._tmax(ctx))
        if host:  # batched NumPy
            ws = _Workspace(host_buffer(tab, u0), (self._host_field(ctx), reltol, abstol, self._tmax(ctx),
                                                   float(xp.finfo(t.dtype).eps), self._time_mode(ctx)))
        else:
            ws = None if backend.is_jax(xp) or stiff else _Workspace(stage_buffer(xp, tab, u0))
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        return DynamicSSState(
            u=u0, fu=fu, t=t, h=h, err_prev=xp.full_like(t, 1e-4), rejected=zi != 0,
            naccept=zi, nreject=zi, flag=zi,
            nf=ctx.counter(nf + nf0), njvp=ctx.counter(0), nvjp=ctx.counter(0), ws=ws,
            lin=stiff_work(ctx) if stiff else None,
        )

    def _init_host(self, u0, ctx, tab, reltol, abstol):
        field, t0, tmax = self._host_field(ctx), float(self.t0), self._tmax(ctx)
        fu = field(t0, u0) if ctx.kind == "steady_state" else ctx.fu0  # solve() evaluated f(u0, p, inf)
        nf = 1 + (ctx.kind == "steady_state") + (self.dt0 is None)
        h = self.dt0 if self.dt0 is not None else initial_step_host(field, t0, u0, fu, tab.order, reltol, abstol)
        if self.controller.dtmax is not None:
            h = min(h, self.controller.dtmax)
        ws = _Workspace(host_buffer(tab, u0), (field, reltol, abstol, tmax, float(_HOST_NP.finfo(ctx.dtype).eps)))
        return DynamicSSState(u=u0, fu=fu, t=t0, h=min(float(h), tmax - t0), err_prev=1e-4, rejected=False,
                              naccept=0, nreject=0, flag=_host_flag(0), nf=nf, njvp=0, nvjp=0, ws=ws)

    def step(self, prob, state, ctx):
        if isinstance(state.t, float):
            return self._step_host(state)
        if state.ws is not None and state.ws.host is not None:
            return self._step_host_batch(state)
        xp = ctx.xp
        reltol, abstol = self._tolerances(ctx)
        a, lin, njvp, nfj = stiff_attempt(self, prob, state, ctx, reltol, abstol) if state.lin is not None else (
            attempt(xp, self.integrator.tableau, self.controller, self._field(ctx), state.t, state.h, state.u,
                    state.fu, state.err_prev, state.rejected, reltol, abstol, self._tmax(ctx),
                    time_dependent=ctx.kind == "steady_state", K=None if state.ws is None else state.ws.K), None, 0, 0)
        flag = xp.where(a.reached, xp.full_like(state.flag, _TIMELIMIT), state.flag)
        flag = xp.where(a.underflow, xp.full_like(state.flag, _STALLED), flag)
        acc = xp.astype(a.accept, state.naccept.dtype)
        return DynamicSSState(
            u=a.u, fu=a.fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected,
            naccept=state.naccept + acc, nreject=state.nreject + (1 - acc),
            flag=flag, nf=state.nf + a.rk.nf + nfj, njvp=state.njvp + njvp, nvjp=state.nvjp, ws=state.ws, lin=lin,
        )

    def _step_host(self, state):
        field, reltol, abstol, tmax, eps = state.ws.host
        a = attempt_host(self.integrator.tableau, self.controller, field, state.t, state.h, state.u, state.fu,
                         state.err_prev, state.rejected, reltol, abstol, tmax, state.ws.K, eps)
        flag = state.flag
        if a.underflow:
            flag = _host_flag(_STALLED)
        elif a.reached:
            flag = _host_flag(_TIMELIMIT)
        return DynamicSSState(
            u=a.u, fu=a.fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected,
            naccept=state.naccept + int(a.accept), nreject=state.nreject + int(not a.accept), flag=flag,
            nf=state.nf + a.nf, njvp=state.njvp, nvjp=state.nvjp, ws=state.ws,
        )

    def _step_host_batch(self, state):
        field, reltol, abstol, tmax, eps, time_mode = state.ws.host
        a = attempt_batch(self.integrator.tableau, self.controller, field, state.t, state.h, state.u, state.fu,
                          state.err_prev, state.rejected, reltol, abstol, tmax, state.ws.K, eps, time_mode)
        flag = _HOST_NP.where(a.reached, _TIMELIMIT, state.flag) if a.reached.any() else state.flag
        if a.underflow.any():
            flag = _HOST_NP.where(a.underflow, _STALLED, flag).astype(state.flag.dtype)
        acc = a.accept.astype(state.naccept.dtype)
        return DynamicSSState(
            u=a.u, fu=a.fu, t=a.t, h=a.h, err_prev=a.err_prev, rejected=a.rejected, naccept=state.naccept + acc,
            nreject=state.nreject + (1 - acc), flag=flag, nf=state.nf + a.nf, njvp=state.njvp, nvjp=state.nvjp,
            ws=state.ws,
        )

    def extra_stats(self, state) -> dict:
        return {**self._time_stats(state), **stiff_stats(state.lin)}

    def _time_stats(self, state) -> dict:
        if isinstance(state.t, float):
            return {"naccept": state.naccept, "nreject": state.nreject, "t": _HOST_NP.float64(state.t)}
        if state.t.shape[0] == 1:
            xp = backend.namespace(("t", state.t))
            return {"naccept": xp.reshape(state.naccept, ()), "nreject": xp.reshape(state.nreject, ()),
                    "t": xp.reshape(state.t, ())}
        return {"naccept": state.naccept, "nreject": state.nreject, "t": state.t}
