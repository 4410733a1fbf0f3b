"""One generic explicit Runge-Kutta step with an embedded error estimate.

Arrays are in the solver layout ``(batch, n)``; ``t`` and ``h`` are ``(batch, 1)``
so that every batch element can have its own time and step size. The step is
straight-line code over the stages (a Python ``for`` over the constant stage
count), so it traces once under ``jax.jit``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .tsit5 import ButcherTableau

__all__ = ["RKStep", "rk_step", "dense_eval"]


class RKStep(NamedTuple):
    u: Any  # (B, n) the propagated solution at t + h
    f: Any  # (B, n) the vector field at (t + h, u): the next step's first stage (FSAL)
    err: Any  # (B, n) local error estimate h * sum_j b_err[j] k_j
    ks: tuple  # the stage derivatives (for dense output)
    nf: int  # vector-field evaluations made by this step (a Python int)


def _combo(coeffs, ks):
    """sum_j coeffs[j] * ks[j] skipping zero coefficients (None when all are zero)."""
    acc = None
    for c, k in zip(coeffs, ks):
        if c == 0.0:
            continue
        term = k if c == 1.0 else c * k
        acc = term if acc is None else acc + term
    return acc


def rk_step(tab: ButcherTableau, f: Callable, t, u, h, k1) -> RKStep:
    """Advance ``u`` from ``t`` by ``h`` with the pair ``tab``.

    ``f(t, u)`` returns du/dt; ``k1 = f(t, u)`` is the first stage, supplied by the
    caller (with FSAL it is the previous step's last stage, so a step costs
    ``tab.new_evaluations`` evaluations). ``t=None`` (an autonomous field) skips the
    stage times and calls ``f(None, u)``.
    """
    ks = [k1]
    u_stage = u
    for i in range(1, tab.stages):
        incr = _combo(tab.a[i], ks)
        u_stage = u if incr is None else u + h * incr
        ks.append(f(None if t is None else t + tab.c[i] * h, u_stage))
    nf = tab.stages - 1
    if tab.fsal:
        u_new, f_new = u_stage, ks[-1]
    else:
        u_new = u + h * _combo(tab.b, ks)
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    err = h * _combo(tab.b_err, ks)
    return RKStep(u_new, f_new, err, tuple(ks), nf)


def dense_eval(tab: ButcherTableau, u, h, ks, theta):
    """The free interpolant ``u(t + theta h) = u + h sum_i b_i(theta) k_i``.

    ``theta`` broadcasts against ``u`` (a Python float or a ``(B, 1)`` array).
    """
    if tab.dense is None:
        raise ValueError(f"tableau {tab.name!r} has no dense output coefficients")
    acc = None
    for poly, k in zip(tab.dense, ks):
        # Horner: b_i(theta) = theta * (d_1 + theta * (d_2 + ...))
        bi = None
        for d in reversed(poly):
            bi = d if bi is None else d + theta * bi
        if bi is None:
            continue
        term = (theta * bi) * k
        acc = term if acc is None else acc + term
    return u if acc is None else u + h * acc
