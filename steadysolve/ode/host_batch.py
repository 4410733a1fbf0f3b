"""The batched NumPy attempt: :func:`~steadysolve.ode.adaptive.attempt` for ``(B, n)`` host arrays,
with the per-element decisions taken on the host where they are uniform.

Same step, same controller, same per-element step sizes as the generic path; what changes is the
number of array operations on ``(B, n)`` (each costs microseconds at B * n = 10^4):

* the stages are written scaled by each element's step (``h k_j``: one product with the steps
  spread over ``(B, n)`` once per step, in place of the copy into the workspace), so every stage
  input is one matrix-vector product ``[1, a_i] @ [u; h k_1; ...]`` and the error estimate another
  (:func:`~steadysolve.ode.host.rk_stages`);
* the scaled error is divided in place and reduced per row by one ``vecdot``; finiteness of the
  new state comes from one whole-array ``max`` (per row only when that is not finite);
* when every element accepts (the usual case) the new state is taken as it is: the ``where``
  against the old state, and the controller's shrink branch, run only when some element rejects.

Used under the same conditions as the unbatched host path (``host.host_path_ok``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .. import _backend as backend
from .._backend.fused import row_squares
from .controller import PIController
from .host import HostWork, rk_stages
from .tsit5 import ButcherTableau

__all__ = ["BatchAttempted", "attempt_batch"]

np = backend.host_numpy()  # this path runs only on batched NumPy arrays


def _clip(x, lo: float, hi: float):
    """``min(max(x, lo), hi)`` (two ufunc calls; ``np.clip`` adds a Python layer)."""
    return np.minimum(np.maximum(x, lo), hi)


class BatchAttempted(NamedTuple):
    u: Any  # (B, n)
    fu: Any  # (B, n)
    t: Any  # (B,)
    h: Any  # (B,) next step size to try
    err_prev: Any  # (B,)
    rejected: Any  # (B,) bool
    accept: Any  # (B,) bool
    reached: Any  # (B,) bool
    underflow: Any  # (B,) bool
    nf: int


def stage_times(ws: HostWork, t, h, per_element: bool):
    """The time of every stage after the first: ``min_b (t_b + c_i h_b)`` as floats, or ``(B,)`` arrays per element."""
    T = np.multiply.outer(np.asarray(ws.c[1:], dtype=h.dtype), h)
    T += t
    return list(T) if per_element else T.min(axis=1).tolist()


def attempt_batch(tab: ButcherTableau, ctrl: PIController, field: Callable, t, h, u, fu, err_prev, rejected,
                  reltol: float, abstol: float, tend: float, ws: HostWork, time_eps: float,
                  time_mode) -> BatchAttempted:
    """One attempt from ``(t, u)`` (``t``, ``h``, ``err_prev``, ``rejected`` of shape ``(B,)``).

    ``time_mode``: None (``field`` gets ``None``), ``"min"`` (a float per stage, the batch's
    smallest stage time) or ``"each"`` (a ``(B,)`` array per stage)."""
    B, n = u.shape
    h = np.minimum(h, tend - t)
    hb = h.astype(u.dtype, copy=False)
    times = None if time_mode is None else stage_times(ws, t, hb, time_mode == "each")
    np.copyto(ws.H, hb[:, None])
    u_new, f_new, err = rk_stages(ws, field, times, u, fu, ws.H)
    m = np.abs(u)
    np.maximum(m, np.abs(u_new), out=m)
    rows_finite = None if math.isfinite(float(m.max())) else np.isfinite(m.max(axis=1))
    if reltol > 0:  # err / (abstol + reltol m) = (err / (abstol / reltol + m)) / reltol
        m += abstol / reltol
        np.divide(err, m, out=err)
        enorm = np.sqrt(row_squares(err) / n) / reltol  # RMS scaled error; not finite when f_new or a stage is not
    else:
        err *= 1.0 / abstol
        enorm = np.sqrt(row_squares(err) / n)
    finite = np.isfinite(enorm)
    if rows_finite is not None:
        finite &= rows_finite
    all_finite = bool(finite.all())
    if not all_finite:
        enorm = np.where(finite, enorm, math.inf)
    accept = finite & (enorm <= 1.0)
    all_accept = all_finite and bool(accept.all())
    b1, b2 = ctrl.exponents(tab.order)
    e_safe = np.maximum(enorm, 1e-10)  # E = 0 (exact step) -> maximal growth
    grow = _clip(ctrl.safety * e_safe ** (-b1) * err_prev ** b2, ctrl.factormin, ctrl.factormax)
    if rejected.any():  # no growth right after a rejection
        grow = np.where(rejected, np.minimum(grow, 1.0), grow)
    if all_accept:
        factor = grow
        err_prev = np.maximum(enorm, 1e-4)
    else:
        shrink = _clip(ctrl.safety * e_safe ** (-1.0 / (tab.error_order + 1)), ctrl.factormin, 1.0)
        if not all_finite:
            shrink = np.where(finite, shrink, ctrl.factormin)
        factor = np.where(accept, grow, shrink)
        err_prev = np.where(accept, np.maximum(enorm, 1e-4), err_prev)
    h_next = h * factor
    if ctrl.dtmax is not None:
        h_next = np.minimum(h_next, ctrl.dtmax)
    land = h >= tend - t  # land exactly on tend
    t_new = np.where(land, tend, t + h) if land.any() else t + h
    if all_accept:
        t_out = t_new
    else:
        t_out = np.where(accept, t_new, t)
        keep = ~accept[:, None]
        u_new = np.where(keep, u, u_new)
        f_new = np.where(keep, fu, f_new)
    h_next = np.minimum(h_next, np.maximum(tend - t_out, 0.0))
    reached = accept & (t_out >= tend)
    underflow = ~reached & (h_next <= 4 * time_eps * np.maximum(np.abs(t_out), 1.0))
    return BatchAttempted(u_new, f_new, t_out, h_next, err_prev, ~accept, accept, reached, underflow,
                          tab.stages - 1)
