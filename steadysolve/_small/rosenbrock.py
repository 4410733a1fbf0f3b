"""The small-system engine's Rosenbrock step: one NumPy system, the stages in one ``(s, n)`` array.

The arithmetic of :func:`~steadysolve.ode._rosenbrock_step.rosenbrock_step` (the same tableau, stage by
stage), organised for a ``(1, n)`` row with Python-float ``t`` and ``h``: each stage's input and coupling
term are one product with a row of the tableau, and the dense W-solver's LAPACK ``getrs`` is called on
the row directly. Chosen by :class:`~steadysolve._small.dynamic_ss.SmallStiffDynamicSS` (through
``rosenbrock_attempt(step=...)``), never by a branch in the generic step.
"""

from __future__ import annotations

from typing import Callable

from .. import _backend as backend
from ..ode._rosenbrock_step import RosenbrockStep, rosenbrock_step, step_start
from ..ode.rosenbrock import Rosenbrock, RosenbrockTableau

_np = backend.host_numpy()

__all__ = ["small_rosenbrock_step"]


_HOST: dict = {}  # tableau name -> its coefficients as host arrays


def _host_coefficients(tab: RosenbrockTableau):
    """``(A, C, m, m_err)`` of ``tab`` as float64 NumPy arrays (strictly lower triangular ``A``, ``C``)."""
    hit = _HOST.get(tab.name)
    if hit is not None and hit[0] is tab:
        return hit[1]
    s = tab.stages
    A, C = _np.zeros((s, s)), _np.zeros((s, s))
    for i in range(s):
        A[i, :i], C[i, :i] = tab.a[i], tab.couple[i]
    out = (A, C, _np.asarray(tab.m, dtype=float), _np.asarray(tab.m_err, dtype=float))
    _HOST[tab.name] = (tab, out)
    return out


def small_rosenbrock_step(method: Rosenbrock, field: Callable, J, t, u, h: float, fu, xp, tderiv: bool = False,
                          ws=None) -> RosenbrockStep:
    """:func:`~steadysolve.ode._rosenbrock_step.rosenbrock_step` for one NumPy system (a ``(1, n)`` row,
    Python-float ``t`` and ``h``): the stages live in one ``(s, n)`` array, so each stage's input and its coupling term are one product with
    a row of the tableau instead of a Python sum over the earlier stages (the per-step overhead of an
    8-stage method on a system of a few unknowns is most of its cost)."""
    if method.tableau.mix is not None:  # a W-method's stage mixing: the generic step
        return rosenbrock_step(method, field, J, t, u, h, fu, xp, tderiv, ws)
    tab, ws, fact, T, nf = step_start(method, field, J, t, u, h, fu, xp, tderiv, ws)
    A, C, m, m_err = _host_coefficients(tab)
    s = tab.stages
    direct = fact[0] == "scipy" and fact[1].ndim == 2  # LAPACK's getrs on the row, without the wrapper
    if direct:
        lu, (piv, getrs) = fact[1], fact[2]
    hinv = 1.0 / h
    K = _np.empty((s, u.shape[1]), dtype=u.dtype)
    u0 = u[0]
    F = fu
    Y = u
    for i in range(s):
        if i > 0:
            Y = (u0 + A[i, :i] @ K[:i])[None]
            F = field(None if t is None else t + tab.nodes[i] * h, Y)
            nf += 1
        rhs = F[0] + (C[i, :i] @ K[:i]) * hinv if i > 0 else F[0]
        if T is not None and tab.d[i] != 0.0:
            rhs = rhs + (tab.d[i] * h) * T[0]
        if direct:
            K[i] = getrs(lu, piv, rhs)[0]
        else:
            K[i] = ws.solve(xp, fact, rhs[None])[0]
    if tab.fsal:
        u_new, f_new = Y, F
    else:
        u_new = (u0 + m @ K)[None]
        f_new = field(None if t is None else t + h, u_new)
        nf += 1
    return RosenbrockStep(u_new, f_new, (m_err @ K)[None], tuple(K[i][None] for i in range(s)), nf, s,
                          ws.factorizations)
