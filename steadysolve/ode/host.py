"""The unbatched NumPy attempt: the same step as :func:`~steadysolve.ode.adaptive.attempt`, with
the scalars on the host.

An unbatched solve on NumPy holds one time, one step size and one error norm, and the
host already has them: the controller runs on Python floats (no ``(1,)`` arrays, no
``where``), the stage combinations are one matrix-vector product each against the stage
workspace, and the error norm is one ``vdot``. A step issues 6 evaluations of ``f`` and
about 30 other array operations (the generic path: about 110).

Used only when it is exact: ``abstol > 0`` (the generic path caps the scaled error when
the tolerance is purely relative) and an FSAL pair whose error weights include the last
stage (then a non-finite new field makes the error norm non-finite).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .controller import PIController
from .runge_kutta import coefficients
from .tsit5 import ButcherTableau

__all__ = ["HostAttempted", "attempt_host", "host_path_ok"]


class HostAttempted(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, n)
    t: float
    h: float  # next step size to try
    err_prev: float
    rejected: bool
    accept: bool
    finite: bool
    reached: bool
    underflow: bool
    h_used: float
    nf: int


def host_path_ok(tab: ButcherTableau, abstol: float) -> bool:
    return abstol > 0 and tab.fsal and tab.b_err[-1] != 0.0


def propose(ctrl: PIController, order: int, error_order: int, h: float, enorm: float, err_prev: float,
            rejected: bool, finite: bool):
    """:func:`~steadysolve.ode.controller.attempt_step` on floats: ``(accept, h_next, err_prev)``."""
    accept = finite and enorm <= 1.0
    e_safe = max(enorm, 1e-10)
    if accept:
        b1, b2 = ctrl.exponents(order)
        factor = min(max(ctrl.safety * e_safe ** (-b1) * err_prev ** b2, ctrl.factormin), ctrl.factormax)
        if rejected:
            factor = min(factor, 1.0)
        err_prev = max(enorm, 1e-4)
    elif finite:
        factor = min(max(ctrl.safety * e_safe ** (-1.0 / (error_order + 1)), ctrl.factormin), 1.0)
    else:
        factor = ctrl.factormin
    h_next = h * factor
    if ctrl.dtmax is not None:
        h_next = min(h_next, ctrl.dtmax)
    return accept, h_next, err_prev


def attempt_host(tab: ButcherTableau, ctrl: PIController, field: Callable, t: float, h: float, u, fu,
                 err_prev: float, rejected: bool, reltol: float, abstol: float, tend: float, K,
                 time_eps: float) -> HostAttempted:
    """One attempt from ``(t, u)``; ``field(t: float | None, u (1, n))``, ``K`` the ``(stages, n)`` workspace."""
    h = min(h, tend - t)
    s = tab.stages
    C, c = coefficients(np, tab, u.dtype, None)
    hC = h * C  # every stage weight times h, one operation per step
    K[0] = fu[0]
    u_stage, k = u, fu
    for i in range(1, s):
        u_stage = u + hC[i, :i] @ K[:i]
        k = field(t + tab.c[i] * h, u_stage)
        K[i] = k[0]
    err = hC[s + 1] @ K
    m = np.abs(u)
    np.maximum(m, np.abs(u_stage), out=m)
    finite = math.isfinite(float(m.max()))  # NaN-propagating: u_new is finite (u is)
    if reltol > 0:
        m *= reltol
        m += abstol
        e = err / m[0]
    else:
        e = err * (1.0 / abstol)
    enorm = math.sqrt(float(np.vdot(e, e)) / e.shape[0])  # the RMS scaled error
    if not math.isfinite(enorm):  # f_new (in err with a nonzero weight) or a stage is not finite
        enorm, finite = math.inf, False
    accept, h_next, err_prev = propose(ctrl, tab.order, tab.error_order, h, enorm, err_prev, rejected, finite)
    t_out = (tend if h >= tend - t else t + h) if accept else t
    h_next = min(h_next, max(tend - t_out, 0.0))
    reached = accept and t_out >= tend
    underflow = not reached and h_next <= 4 * time_eps * max(abs(t_out), 1.0)
    return HostAttempted(u_stage if accept else u, k if accept else fu, t_out, h_next, err_prev, not accept,
                         accept, finite, reached, underflow, h, s - 1)
