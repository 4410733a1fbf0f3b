"""One adaptive Runge-Kutta attempt: the step glue shared by ``DynamicSS`` and ``integrate``.

An *attempt* tries a step of size ``h`` (clipped to land exactly on ``tend``), estimates its
local error, lets the :class:`PIController` accept or reject it, and proposes the next step
size. Everything is per batch element (``(B,)`` times, step sizes and decisions, ``(B, n)``
states) and a rejection is expressed with ``where`` (the old state is kept), so one attempt
is straight-line, jit-able code. ``DynamicSS`` runs attempts inside the solve driver;
``integrate`` runs them in its own loop that only adds saving (dense output) and stops at
``tend``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from .. import _backend as backend
from .controller import PIController, attempt_step, error_norm, initial_step
from .runge_kutta import RKStep, rk_step
from .tsit5 import ButcherTableau

__all__ = ["Attempted", "attempt", "conclude", "first_step"]


class Attempted(NamedTuple):
    u: Any  # (B, n) state after the attempt (the old one where rejected)
    fu: Any  # (B, n) vector field at u (FSAL)
    t: Any  # (B,) time after the attempt
    h: Any  # (B,) next step size to try
    err_prev: Any  # (B,) controller memory
    rejected: Any  # (B,) bool: this attempt was rejected
    accept: Any  # (B,) bool
    finite: Any  # (B,) bool: the attempted state and field were finite
    reached: Any  # (B,) bool: accepted and t reached tend
    underflow: Any  # (B,) bool: not reached and the next step no longer changes t
    h_used: Any  # (B,) the step size actually attempted
    rk: RKStep  # the step: its stages (for dense output) and counts (a RosenbrockStep for a Rosenbrock method)


def first_step(xp, tab: ButcherTableau, ctrl: PIController, field: Callable, t, u, fu, reltol: float,
               abstol: float, dt0: Optional[float], tend: float):
    """The first step size ``(B,)`` and the evaluations it cost (Hairer-Wanner's rule when ``dt0`` is None)."""
    B = u.shape[0]
    if dt0 is None:
        h = initial_step(xp, field, xp.reshape(t, (B, 1)), u, fu, tab.order, reltol, abstol)
        nf = 1
    else:
        h = xp.full((B,), float(dt0), dtype=t.dtype, device=_device(u))
        nf = 0
    if ctrl.dtmax is not None:
        h = xp.minimum(h, xp.full_like(h, ctrl.dtmax))
    return xp.minimum(h, tend - t), nf


def _device(x):
    return backend.device_of(x)


def time_dtype(xp, dtype):
    """Times and step sizes are float32 at least: a half-precision clock stalls (and overflows at 65504)."""
    return backend.working_dtype(xp, dtype)


def attempt(xp, tab: ButcherTableau, ctrl: PIController, field: Callable, t, h, u, fu, err_prev, rejected,
            reltol: float, abstol: float, tend: float, time_dependent: bool = True, K=None) -> Attempted:
    """Attempt one step from ``(t, u)`` with ``fu = field(t, u)``; ``field(t (B, 1) | None, u)``;
    ``K`` the stage workspace (:func:`~steadysolve.ode.runge_kutta.stage_buffer`)."""
    B = u.shape[0]
    h = xp.minimum(h, tend - t)  # land exactly on tend
    hb = backend.cast(xp, xp.reshape(h, (B, 1)), u.dtype)  # the state's arithmetic stays in its dtype
    r = rk_step(tab, field, xp.reshape(t, (B, 1)) if time_dependent else None, u, hb, fu, K, xp)
    return conclude(xp, ctrl, tab.order, tab.error_order, t, h, u, fu, r, err_prev, rejected, reltol, abstol, tend)


def conclude(xp, ctrl: PIController, order: int, error_order: int, t, h, u, fu, r, err_prev, rejected,
             reltol: float, abstol: float, tend: float) -> Attempted:
    """Judge the step ``r`` (``u``, ``f``, ``err`` at ``t + h``; ``h`` already clipped to ``tend``): the
    error norm, the controller's decision and the next step, per element (any integrator's step)."""
    B = u.shape[0]
    enorm, finite = error_norm(xp, r.err, u, r.u, reltol, abstol, f_new=r.f)
    a = attempt_step(ctrl, xp, order, error_order, h, enorm, err_prev, rejected, finite)
    acc = a.accept
    acc2 = xp.reshape(acc, (B, 1))
    t_new = xp.where(h >= tend - t, xp.full_like(t, tend), t + h)
    t_out = xp.where(acc, t_new, t)
    h_next = xp.minimum(a.h_next, xp.maximum(tend - t_out, xp.zeros_like(t_out)))
    reached = acc & (t_out >= tend)
    eps = float(xp.finfo(t.dtype).eps)
    underflow = ~reached & (h_next <= 4 * eps * xp.maximum(xp.abs(t_out), xp.ones_like(t_out)))
    return Attempted(
        u=xp.where(acc2, r.u, u), fu=xp.where(acc2, r.f, fu), t=t_out, h=h_next, err_prev=a.err_prev,
        rejected=a.rejected, accept=acc, finite=finite, reached=reached, underflow=underflow, h_used=h, rk=r,
    )
