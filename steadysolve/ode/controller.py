"""Step-size control: a PI controller on the scaled local error, and the automatic
initial step of Hairer, Norsett & Wanner (Solving ODEs I, II.4).

Everything is per batch element: error norms, step sizes and the accept/reject
decision are written once against a per-element namespace (``(B,)`` arrays, every choice
a ``where``, so one attempt is jit-able straight-line code; or Python floats for one
NumPy system), and a rejected step keeps the old state and retries with the smaller step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .._backend import cast, working_dtype
from .._checks import check_positive

__all__ = ["PIController", "Attempt", "attempt_step", "initial_step", "error_norm"]


@dataclass(frozen=True)
class PIController:
    """Proportional-integral step-size controller.

    A step with scaled error ``E = rms(err / (abstol + reltol * max(|u|, |u_new|)))`` is
    accepted when ``E <= 1``; the next step is ``h * clip(safety * E**(-beta1) *
    E_prev**beta2, factormin, factormax)`` (Gustafsson's PI rule; ``beta2 = 0`` is the
    classical I controller). After a rejection the step is cut by
    ``max(factormin, safety * E**(-1/(q+1)))`` (``q`` the embedded order) and the
    next accepted step may not grow.

    Parameters
    ----------
    reltol
        Tolerance on the local error. Neither ``reltol`` nor ``abstol`` given: the caller's
        (``DynamicSS`` uses a tenth of the solve's ``reltol`` / ``abstol``, ``integrate`` its own);
        exactly one given: the other is 0.
    abstol
        As ``reltol``.
    safety
        The usual safety factor (with the growth bounds below).
    factormin
        The smallest step-size factor.
    factormax
        The largest step-size factor.
    beta1
        PI exponents; ``None`` gives ``0.85 / order`` and ``0.2 / order``
        (0.17 and 0.04 for a fifth-order pair: Hairer's DOPRI5 values, which let the step
        grow quickly once the solution settles, as it does on the way to a steady state).
    beta2
        As ``beta1``.
    dtmax
        Optional upper bound on the step size.

    Raises
    ------
    ValueError
        An invalid option (``safety`` outside ``(0, 1]``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> ctl = ss.PIController(reltol=1e-8, abstol=1e-10, dtmax=0.1)
    >>> sol = ss.integrate(lambda u, p, t: -u, np.ones(1), (0.0, 1.0), controller=ctl, saveat=[1.0])
    >>> np.round(sol.us[0], 8), bool(np.all(np.diff(sol.ts) >= 0))
    (array([0.36787944]), True)
    """

    reltol: Optional[float] = None
    abstol: Optional[float] = None
    safety: float = 0.9
    factormin: float = 0.2
    factormax: float = 10.0
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    dtmax: Optional[float] = None

    def __post_init__(self):
        own = "PIController"
        check_positive(own, "reltol", self.reltol, allow_zero=True, allow_none=True)
        check_positive(own, "abstol", self.abstol, allow_zero=True, allow_none=True)
        check_positive(own, "safety", self.safety)
        check_positive(own, "factormin", self.factormin)
        check_positive(own, "factormax", self.factormax)
        check_positive(own, "beta1", self.beta1, allow_none=True)
        check_positive(own, "beta2", self.beta2, allow_zero=True, allow_none=True)
        check_positive(own, "dtmax", self.dtmax, allow_none=True)
        if self.safety > 1:
            raise ValueError(f"{own}: safety must be in (0, 1], got {self.safety}")
        if self.factormin >= 1:
            raise ValueError(f"{own}: factormin must be < 1, got {self.factormin}")
        if self.factormax <= 1:
            raise ValueError(f"{own}: factormax must be > 1, got {self.factormax}")
        if self.reltol is not None and self.abstol is not None and self.reltol == 0 and self.abstol == 0:
            raise ValueError(f"{own}: reltol and abstol cannot both be 0")

    def tolerances(self, reltol: float, abstol: float) -> tuple[float, float]:
        """This controller's ``(reltol, abstol)``: the caller's when it sets neither; when it sets
        exactly one, the other is 0 (a tolerance set binds: the caller's cannot loosen it)."""
        if self.reltol is None and self.abstol is None:
            r, a = reltol, abstol
        else:
            r = 0.0 if self.reltol is None else self.reltol
            a = 0.0 if self.abstol is None else self.abstol
        if r == 0 and a == 0:
            raise ValueError("PIController: the local-error tolerances reltol and abstol are both 0; "
                             "set PIController(reltol=..., abstol=...)")
        return float(r), float(a)

    def exponents(self, order: int) -> tuple[float, float]:
        b1 = 0.85 / order if self.beta1 is None else self.beta1
        b2 = 0.2 / order if self.beta2 is None else self.beta2
        return b1, b2


def error_norm(el, err, u, u_new, reltol: float, abstol: float, f_new=None):
    """``(enorm, finite)`` per element: the RMS of ``err / (abstol + reltol * max(|u|, |u_new|))`` (inf where
    not finite) and whether ``u_new`` (and ``f_new``, when given) are finite; in float32 at least (the
    squares of a half-precision state would overflow).

    ``el`` is the per-element namespace (:mod:`~steadysolve.ode._elements`). ``u_new`` enters the scale,
    so a non-finite ``u_new`` could leave a finite (zero) ratio: its rows are checked through the same
    ``max(|u|, |u_new|)``. Pass ``f_new`` unless the error estimate depends on it (an FSAL pair whose
    last error weight is nonzero: a non-finite field then makes ``err`` non-finite)."""
    xp = el.xp
    wd = working_dtype(xp, err.dtype)
    if wd != err.dtype:
        err, u, u_new = (xp.astype(a, wd) for a in (err, u, u_new))
        f_new = None if f_new is None else xp.astype(f_new, wd)
    m = xp.maximum(xp.abs(u), xp.abs(u_new))
    finite = el.row_finite(m)
    if f_new is not None:
        finite = finite & el.row_finite(xp.abs(f_new))
    n = u.shape[1]
    if reltol > 0 and abstol > 0:  # err / (abstol + reltol m) = (err / (abstol / reltol + m)) / reltol
        e = el.sqrt(el.row_sumsq(err / (m + abstol / reltol)) / n) / reltol
    elif reltol == 0:
        e = el.sqrt(el.row_sumsq(err) / n) / abstol
    else:  # a purely relative tolerance: floor the scale of a zero component and cap the ratio (1e10
        # means "reject" as surely as inf, without overflow)
        floor = float(xp.finfo(err.dtype).smallest_normal) ** 0.5
        ratio = xp.minimum(xp.abs(err) / xp.maximum(reltol * m, floor), 1e10)
        e = el.sqrt(el.row_sumsq(ratio) / n)
    finite = finite & el.isfinite(e)
    return el.where(finite, e, math.inf), finite


def _wide(xp, x):
    return cast(xp, x, working_dtype(xp, x.dtype))


class Attempt(NamedTuple):
    accept: Any  # (B,) bool
    h_next: Any  # (B,) the step to try next (after an accept or a reject)
    err_prev: Any  # (B,) the controller's memory (last accepted scaled error)
    rejected: Any  # (B,) bool: the last attempt was rejected (no growth next time)
    enorm: Any  # (B,) scaled error of this attempt


def attempt_step(ctrl: PIController, el, order: int, error_order: int, h, enorm, err_prev, rejected,
                 finite) -> Attempt:
    """Accept or reject an attempted step of size ``h`` and propose the next one, per element (``el``: the
    per-element namespace, :mod:`~steadysolve.ode._elements`)."""
    b1, b2 = ctrl.exponents(order)
    accept = (enorm <= 1.0) & finite
    e_safe = el.maximum(enorm, 1e-10)  # E = 0 (exact step) -> maximal growth
    grow = el.clip(ctrl.safety * e_safe ** (-b1) * err_prev ** b2, ctrl.factormin, ctrl.factormax)
    grow = el.where(rejected, el.minimum(grow, 1.0), grow)  # no growth right after a rejection
    shrink = el.clip(ctrl.safety * e_safe ** (-1.0 / (error_order + 1)), ctrl.factormin, 1.0)
    shrink = el.where(finite, shrink, ctrl.factormin)
    h_next = h * el.where(accept, grow, shrink)
    if ctrl.dtmax is not None:
        h_next = el.minimum(h_next, ctrl.dtmax)
    err_prev = el.where(accept, el.maximum(enorm, 1e-4), err_prev)
    return Attempt(accept, h_next, err_prev, el.logical_not(accept), enorm)


def initial_step(el, f, t0, u0, f0, order: int, reltol: float, abstol: float):
    """Hairer-Wanner's starting step per element (one extra evaluation of ``f``).

    ``f(t, u)`` with ``t`` a row time (``el.rows``); ``t0`` per element. Norms and step sizes are in
    float32 at least; the trial state stays in the dtype of ``u0``.
    """
    xp = el.xp
    n = u0.shape[1]
    scale = abstol + reltol * xp.abs(_wide(xp, u0))
    floor = float(xp.finfo(scale.dtype).smallest_normal) ** 0.5

    def rms(x):
        x = _wide(xp, x)
        r = x / scale if abstol > 0 else xp.minimum(xp.abs(x) / xp.maximum(scale, floor), 1e10)
        return el.sqrt(el.row_sumsq(r) / n)

    d0, d1 = rms(u0), rms(f0)
    h0 = el.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / el.where(d1 > 0, d1, 1.0))
    f1 = f(el.rows(t0 + h0), u0 + el.rows(h0, u0.dtype) * f0)
    # h0 underflows to 0 when f0 is huge against u0 (an overflowing field): f1 == f0 then, and the
    # Python-float namespace of one system would raise ZeroDivisionError where arrays give NaN
    d2 = rms(f1 - f0) / el.where(h0 > 0, h0, 1.0)
    dmax = el.maximum(d1, d2)
    h1 = el.where(dmax <= 1e-15, el.maximum(h0 * 1e-3, 1e-6),
                  (0.01 / el.where(dmax > 1e-15, dmax, 1.0)) ** (1.0 / (order + 1)))
    h = el.minimum(100 * h0, h1)
    return el.where(el.isfinite(h), h, 1e-6)
