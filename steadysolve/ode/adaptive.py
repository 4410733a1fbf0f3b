"""One adaptive attempt: the step glue shared by ``DynamicSS``, its small-system twin and ``integrate``.

An *attempt* tries a step of size ``h`` (clipped to land exactly on ``tend``), estimates its
local error, lets the :class:`PIController` accept or reject it, and proposes the next step
size. It is written once against a per-element namespace ``el`` (:mod:`~steadysolve.ode._elements`):
``(B,)`` arrays of any library with every decision a ``where`` (straight-line, jit-able code), or
Python floats for one NumPy system (``steadysolve._small``). A rejected element keeps its old
state. ``DynamicSS`` runs attempts inside the solve driver; ``integrate`` runs them in its own
loop that only adds saving (dense output) and stops at ``tend``. A Rosenbrock step is judged by
the same :func:`conclude`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from .. import _backend as backend
from .controller import PIController, attempt_step, error_norm, initial_step
from .runge_kutta import RKStep, rk_step
from .tsit5 import ButcherTableau

__all__ = ["Attempted", "attempt", "conclude", "first_step", "time_dtype"]


class Attempted(NamedTuple):
    u: Any  # (B, n) state after the attempt (the old one where rejected)
    fu: Any  # (B, n) vector field at u (FSAL)
    t: Any  # time after the attempt, per element
    h: Any  # next step size to try
    err_prev: Any  # controller memory
    rejected: Any  # bool: this attempt was rejected
    accept: Any  # bool
    finite: Any  # bool: the attempted state and field were finite
    reached: Any  # bool: accepted and t reached tend
    underflow: Any  # bool: not reached and the next step no longer changes t
    h_used: Any  # the step size actually attempted
    rk: RKStep  # the step: its stages (for dense output) and counts (a RosenbrockStep for a Rosenbrock method)
    hrho: Any = None  # h |lambda| of the mode the error estimate follows (attempt(stiffness=True))


def first_step(el, tab: ButcherTableau, ctrl: PIController, field: Callable, t, u, fu, reltol: float,
               abstol: float, dt0: Optional[float], tend: float):
    """The first step size per element and the evaluations it cost (Hairer-Wanner's rule when ``dt0``
    is None); ``t`` per element in the clock's type."""
    if dt0 is None:
        h, nf = initial_step(el, field, t, u, fu, tab.order, reltol, abstol), 1
    else:
        h, nf = el.full(t, float(dt0)), 0
    if ctrl.dtmax is not None:
        h = el.minimum(h, ctrl.dtmax)
    return el.minimum(h, tend - t), nf


def time_dtype(xp, dtype):
    """Times and step sizes are float32 at least: a half-precision clock stalls (and overflows at 65504)."""
    return backend.working_dtype(xp, dtype)


def attempt(el, tab: ButcherTableau, ctrl: PIController, field: Callable, t, h, u, fu, err_prev, rejected,
            reltol: float, abstol: float, tend: float, time_dependent: bool = True, work=None,
            stiffness: bool = False) -> Attempted:
    """Attempt one step from ``(t, u)`` with ``fu = field(t, u)``; ``field(t | None, u)`` takes row times
    (``el.rows``); ``work`` the workspace (:func:`~steadysolve.ode.runge_kutta.stage_buffer`).

    ``stiffness=True`` also estimates ``h |lambda|`` of the mode that drives the error estimate,
    ``||err|| / ||sum_l (b_err^T A)_l h k_l||`` (``ButcherTableau.error_inputs``; one more product and
    two reductions): small for a smooth solution, the method's stability limit when stability, not
    accuracy, holds the step (a stiff problem)."""
    h = el.minimum(h, tend - t)  # land exactly on tend
    hb = el.rows(h, u.dtype)  # the state's arithmetic stays in its dtype
    r = rk_step(tab, field, el.rows(t) if time_dependent else None, u, hb, fu, work, el.xp, stiffness=stiffness)
    # an FSAL pair whose last error weight is nonzero carries a non-finite new field into err
    f_in_err = tab.fsal and tab.b_err[-1] != 0.0
    hrho = None
    if r.ey is not None:
        xp, err, ey = el.xp, r.err, r.ey
        wd = backend.working_dtype(xp, u.dtype)
        if wd != u.dtype:
            err, ey = xp.astype(err, wd), xp.astype(ey, wd)
        hrho = el.sqrt(el.row_sumsq(err) / el.maximum(el.row_sumsq(ey), _tiny(xp, wd)))
    return conclude(el, ctrl, tab.order, tab.error_order, t, h, u, fu, r, err_prev, rejected, reltol, abstol, tend,
                    f_in_err=f_in_err, hrho=hrho)


_TINY: dict = {}


def _tiny(xp, dtype) -> float:
    """The smallest normal number of ``dtype`` (cached per namespace and dtype)."""
    key = (id(xp), dtype)
    if key not in _TINY:
        _TINY[key] = float(xp.finfo(dtype).smallest_normal)
    return _TINY[key]


def conclude(el, ctrl: PIController, order: int, error_order: int, t, h, u, fu, r, err_prev, rejected,
             reltol: float, abstol: float, tend: float, f_in_err: bool = False, hrho=None) -> Attempted:
    """Judge the step ``r`` (``u``, ``f``, ``err`` at ``t + h``; ``h`` already clipped to ``tend``): the
    error norm, the controller's decision and the next step, per element (any integrator's step)."""
    enorm, finite = error_norm(el, r.err, u, r.u, reltol, abstol, f_new=None if f_in_err else r.f)
    a = attempt_step(ctrl, el, order, error_order, h, enorm, err_prev, rejected, finite)
    acc = a.accept
    t_out = el.where(acc, el.where(h >= tend - t, tend, t + h), t)
    h_next = el.minimum(a.h_next, el.maximum(tend - t_out, 0.0))
    reached = acc & (t_out >= tend)
    tiny = 4 * el.eps(t) * el.maximum(el.abs(t_out), 1.0)
    underflow = el.logical_not(reached) & (h_next <= tiny)
    return Attempted(
        u=el.pick(acc, r.u, u), fu=el.pick(acc, r.f, fu), t=t_out, h=h_next, err_prev=a.err_prev,
        rejected=a.rejected, accept=acc, finite=finite, reached=reached, underflow=underflow, h_used=h, rk=r,
        hrho=hrho,
    )
