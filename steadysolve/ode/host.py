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

from .. import _backend as backend
from .controller import PIController
from .runge_kutta import _host_coefficients
from .tsit5 import ButcherTableau

__all__ = ["HostAttempted", "HostWork", "attempt_host", "host_path_ok", "host_buffer", "initial_step_host", "rk_stages"]

np = backend.host_numpy()  # this path runs only on unbatched NumPy arrays


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


def initial_step_host(field: Callable, t0: float, u0, f0, order: int, reltol: float, abstol: float) -> float:
    """:func:`~steadysolve.ode.controller.initial_step` (Hairer-Wanner, one extra evaluation of
    ``field``) on floats, for one ``(1, n)`` state (``abstol > 0`` on this path)."""
    u, f = u0[0], f0[0]
    scale = abstol + reltol * np.abs(u)
    n = u.shape[0]

    def rms(x):
        e = x / scale
        return math.sqrt(float(e.dot(e)) / n)

    d0, d1 = rms(u), rms(f)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    d2 = rms(field(t0 + h0, u0 + h0 * f0)[0] - f) / h0
    if not math.isfinite(d2):  # NaN / Inf propagate as in the array path: the fallback step
        return 1e-6
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / (order + 1))
    h = min(100 * h0, h1)
    return h if math.isfinite(h) else 1e-6


class HostWork:
    """The host attempts' workspace, allocated once per solve: ``Y`` ``(stages + 1, B * n)`` holds ``u``
    in row 0 and ``h k_j`` in row ``j + 1`` (each stage is scaled by its element's step as it is
    written, so the weights stay constant), ``rows`` its rows as ``(B, n)`` views, ``stage[i - 1]``
    the triple ``(weights, rows, out)``: the product is stage ``i``'s input ``u + sum_j a_ij h k_j``,
    ``out`` the row that receives ``h k_i``, and
    ``err`` the pair giving the local error ``sum_j b_err_j h k_j``; batched, ``H`` ``(B, n)`` holds each
    row's step (a product with a full array costs a third of one that broadcasts a ``(B, 1)`` column)."""

    __slots__ = ("Y", "rows", "stage", "err", "c", "H")

    def __init__(self, tab: ButcherTableau, u):
        s = tab.stages
        B, n = u.shape
        self.Y = Y = np.zeros((s + 1, B * n), dtype=u.dtype)
        self.rows = rows = list(Y.reshape(s + 1, B, n))
        w_stage, w_err = _weights(tab, u.dtype)
        self.stage = [(w, Y[:i + 1], rows[i + 1]) for i, w in enumerate(w_stage, 1)]
        self.err = (w_err, Y[1:])
        self.c = _host_coefficients(tab)[1]
        self.H = np.empty((B, n), dtype=u.dtype) if B > 1 else None


def host_buffer(tab: ButcherTableau, u) -> HostWork:
    return HostWork(tab, u)


def _weights(tab: ButcherTableau, dtype):
    """``(stage weights, error weights)`` in ``dtype``: ``[1, a_i1, ..., a_i(i-1)]`` for the stages
    ``i = 1 ..`` (the leading 1 multiplies ``u``) and ``b_err`` (cached per tableau and dtype)."""
    key = (id(tab), dtype)
    hit = _W.get(key)
    if hit is None or hit[0] is not tab:
        C, _ = _host_coefficients(tab)
        s = tab.stages
        W = np.zeros((len(C), s + 1), dtype=dtype)
        W[:, 1:] = C
        W[:s + 1, 0] = 1.0
        W.flags.writeable = False
        hit = _W[key] = (tab, [W[i, :i + 1] for i in range(1, s)], W[s + 1, 1:])
    return hit[1:]


_W: dict = {}


_NONES = (None,) * 64
_max = np.maximum.reduce


def rk_stages(ws: HostWork, field: Callable, times, u, fu, h):
    """``(u_new, f_new, err)`` of one FSAL step from ``u`` (``(B, n)``, ``fu = field(., u)``) by ``h`` (a
    float, or ``(B, n)``); ``times[i - 1]`` is passed to ``field`` with stage ``i`` (``times=None``:
    ``None``). Per stage: one matrix-vector product and one scaled write (plus ``field``)."""
    rows, mul = ws.rows, np.multiply
    np.copyto(rows[0], u)
    mul(fu, h, out=rows[1])
    shape = u.shape
    u_stage = k = None
    for (w, Y, out), t in zip(ws.stage, _NONES if times is None else times):
        u_stage = w.dot(Y).reshape(shape)
        k = field(t, u_stage)
        mul(k, h, out=out)
    w, Y = ws.err
    return u_stage, k, w.dot(Y).reshape(shape)


def attempt_host(tab: ButcherTableau, ctrl: PIController, field: Callable, t: float, h: float, u, fu,
                 err_prev: float, rejected: bool, reltol: float, abstol: float, tend: float, ws: HostWork,
                 time_eps: float) -> HostAttempted:
    """One attempt from ``(t, u)``; ``field(t: float | None, u (1, n))``, ``ws`` from :func:`host_buffer`."""
    h = min(h, tend - t)
    n = u.shape[1]
    u_new, f_new, err = rk_stages(ws, field, [t + c * h for c in ws.c[1:]], u, fu, h)
    err = err[0]
    m = np.abs(u[0])
    np.maximum(m, np.abs(u_new[0]), out=m)
    finite = math.isfinite(_max(m))  # NaN-propagating: u_new is finite (u is)
    if reltol > 0:  # err / (abstol + reltol m) = (err / (abstol / reltol + m)) / reltol
        m += abstol / reltol
        e = err / m
        enorm = math.sqrt(float(e.dot(e)) / n) / reltol  # the RMS scaled error
    else:
        e = err * (1.0 / abstol)
        enorm = math.sqrt(float(e.dot(e)) / n)
    if not math.isfinite(enorm):  # f_new (in err with a nonzero weight) or a stage is not finite
        enorm, finite = math.inf, False
    accept, h_next, err_prev = propose(ctrl, tab.order, tab.error_order, h, enorm, err_prev, rejected, finite)
    t_out = (tend if h >= tend - t else t + h) if accept else t
    h_next = min(h_next, max(tend - t_out, 0.0))
    reached = accept and t_out >= tend
    underflow = not reached and h_next <= 4 * time_eps * max(abs(t_out), 1.0)
    return HostAttempted(u_new if accept else u, f_new if accept else fu, t_out, h_next, err_prev, not accept,
                         accept, finite, reached, underflow, h, tab.stages - 1)
