"""Step-size control: a PI controller on the scaled local error, and the automatic
initial step of Hairer, Norsett & Wanner (Solving ODEs I, II.4).

Everything is per batch element: error norms, step sizes and the accept/reject
decision are ``(B,)`` arrays, and a rejected step is expressed with ``where``
(the caller keeps the old state and retries with the smaller step), so one
attempt is jit-able straight-line code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .._backend import cast, working_dtype
from .._checks import check_positive, renamed_options

__all__ = ["PIController", "Attempt", "attempt_step", "initial_step", "error_norm"]


@renamed_options(rtol="reltol", atol="abstol")
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


def error_norm(xp, err, u, u_new, reltol: float, abstol: float, f_new=None):
    """Per-element RMS of the error scaled by ``abstol + reltol * max(|u|, |u_new|)``; inf when not finite
    (computed in float32 at least: half-precision states would overflow the squares).

    With ``f_new`` returns ``(enorm, finite)``, ``finite`` telling whether ``u_new`` and ``f_new`` are
    finite, from the same reduction: ``0 * x`` is NaN exactly when ``x`` is not finite, so adding
    ``0 * (u_new + f_new)`` to the squares makes the sum non-finite then (one reduction instead of three).
    """
    err, u, u_new = (_wide(xp, a) for a in (err, u, u_new))
    scale = abstol + reltol * xp.maximum(xp.abs(u), xp.abs(u_new))
    sq = _scaled(xp, err, scale, abstol) ** 2
    if f_new is None:
        e = xp.sqrt(xp.mean(sq, axis=1))
        return xp.where(xp.isfinite(e), e, xp.full_like(e, math.inf))
    e = xp.sqrt(xp.mean(sq + 0.0 * (u_new + _wide(xp, f_new)), axis=1))
    finite = xp.isfinite(e)
    return xp.where(finite, e, xp.full_like(e, math.inf)), finite


def _wide(xp, x):
    return cast(xp, x, working_dtype(xp, x.dtype))


def _scaled(xp, x, scale, abstol: float):
    """``x / scale``; with ``abstol = 0`` (a purely relative tolerance) a zero component of ``u`` has
    scale 0: floor it and cap the ratio (1e10 means "reject" as surely as inf, without overflow)."""
    if abstol > 0:
        return x / scale
    floor = float(xp.finfo(x.dtype).smallest_normal) ** 0.5
    return xp.minimum(xp.abs(x) / xp.maximum(scale, xp.full_like(scale, floor)), xp.full_like(x, 1e10))


class Attempt(NamedTuple):
    accept: Any  # (B,) bool
    h_next: Any  # (B,) the step to try next (after an accept or a reject)
    err_prev: Any  # (B,) the controller's memory (last accepted scaled error)
    rejected: Any  # (B,) bool: the last attempt was rejected (no growth next time)
    enorm: Any  # (B,) scaled error of this attempt


def attempt_step(ctrl: PIController, xp, order: int, error_order: int, h, enorm, err_prev, rejected,
                 finite) -> Attempt:
    """Accept or reject an attempted step of size ``h`` (all ``(B,)``) and propose the next one."""
    b1, b2 = ctrl.exponents(order)
    one = xp.ones_like(enorm)
    accept = (enorm <= one) & finite
    e_safe = xp.maximum(enorm, xp.full_like(enorm, 1e-10))  # E = 0 (exact step) -> maximal growth
    grow = ctrl.safety * e_safe ** (-b1) * err_prev ** b2
    grow = xp.minimum(xp.maximum(grow, xp.full_like(grow, ctrl.factormin)), xp.full_like(grow, ctrl.factormax))
    grow = xp.where(rejected, xp.minimum(grow, one), grow)  # no growth right after a rejection
    shrink = xp.maximum(ctrl.safety * e_safe ** (-1.0 / (error_order + 1)), xp.full_like(enorm, ctrl.factormin))
    shrink = xp.where(finite, xp.minimum(shrink, one), xp.full_like(enorm, ctrl.factormin))
    h_next = h * xp.where(accept, grow, shrink)
    if ctrl.dtmax is not None:
        h_next = xp.minimum(h_next, xp.full_like(h_next, ctrl.dtmax))
    err_prev = xp.where(accept, xp.maximum(enorm, xp.full_like(enorm, 1e-4)), err_prev)
    return Attempt(accept, h_next, err_prev, ~accept, enorm)


def initial_step(xp, f, t0, u0, f0, order: int, reltol: float, abstol: float):
    """Hairer-Wanner's starting step (one extra evaluation of ``f``), per element ``(B,)``.

    ``f(t, u)`` with ``t`` of shape ``(B, 1)``; ``t0`` is ``(B, 1)``. Norms and step sizes are in
    float32 at least; the trial state stays in the dtype of ``u0``.
    """
    scale = abstol + reltol * xp.abs(_wide(xp, u0))

    def rms(x):
        return xp.sqrt(xp.mean(_scaled(xp, _wide(xp, x), scale, abstol) ** 2, axis=1))

    d0, d1 = rms(u0), rms(f0)
    small = xp.full_like(d0, 1e-5)
    h0 = xp.where((d0 < small) | (d1 < small), xp.full_like(d0, 1e-6),
                  0.01 * d0 / xp.where(d1 > 0, d1, xp.ones_like(d1)))
    h0c = xp.reshape(h0, (h0.shape[0], 1))
    f1 = f(t0 + h0c, u0 + cast(xp, h0c, u0.dtype) * f0)
    d2 = rms(f1 - f0) / h0
    dmax = xp.maximum(d1, d2)
    tiny = xp.full_like(dmax, 1e-15)
    h1 = xp.where(dmax <= tiny, xp.maximum(xp.full_like(h0, 1e-6), h0 * 1e-3),
                  (0.01 / xp.where(dmax > tiny, dmax, xp.ones_like(dmax))) ** (1.0 / (order + 1)))
    h = xp.minimum(100 * h0, h1)
    return xp.where(xp.isfinite(h), h, xp.full_like(h, 1e-6))
