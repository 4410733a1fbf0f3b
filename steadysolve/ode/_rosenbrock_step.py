"""One Rosenbrock step and one adaptive Rosenbrock attempt, on ``(batch, n)`` rows.

The step is straight-line code over the constant stage count (a Python ``for``; under JAX tracing
the vector field is traced once per stage): ``W = I / (h gamma) - J`` is factorised once by the
method's W-solver, every stage is one evaluation of ``f`` (stage 1 reuses ``f(t, u)``, and a FSAL
pair's last stage is ``f`` at the new solution) and one solve. ``h`` is ``(B, 1)``: every element
has its own step, hence its own ``W``.

Non-autonomous fields: ``df/dt`` at ``(t, u)`` by one forward difference in ``t``
(``dt = sqrt(eps) max(|t|, 1)``, taken as the representable difference), one evaluation of ``f``
per step; an autonomous method (``autonomous=True``, or a field without ``t``) skips it. ``J`` is the
caller's: it is built once per accepted state and reused by the retries after a rejection.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .. import _backend as backend

from .adaptive import Attempted, conclude
from .controller import PIController
from .rosenbrock import Rosenbrock, RosenbrockTableau
from .runge_kutta import _combo

__all__ = ["RosenbrockStep", "rosenbrock_step", "step_start", "rosenbrock_attempt", "time_derivative"]

_SQRT_EPS = 2.0 ** -26  # of a Python-float clock


class RosenbrockStep(NamedTuple):
    u: Any  # (B, n) the propagated solution at t + h
    f: Any  # (B, n) the vector field at (t + h, u): the next step's first stage
    err: Any  # (B, n) local error estimate sum_i m_err[i] U_i
    ks: Any  # the stage solutions U_i (a tuple of (B, n)): dense output is runge_kutta.dense_eval with h = 1
    nf: int  # vector-field evaluations made by this step
    nsolve: int  # linear solves with W
    nfact: int  # factorisations of W


def time_derivative(xp, field: Callable, t, u, fu):
    """``df/dt`` at ``(t, u)`` ``(B, n)`` by a forward difference (one evaluation); ``t`` is ``(B, 1)``, or a
    Python float for one NumPy system."""
    if isinstance(t, float):
        dt = (t + _SQRT_EPS * max(abs(t), 1.0)) - t
        return (field(t + dt, u) - fu) / dt
    eps = float(xp.finfo(t.dtype).eps)
    dt = (t + eps ** 0.5 * xp.maximum(xp.abs(t), xp.ones_like(t))) - t
    return (field(t + dt, u) - fu) / backend.cast(xp, dt, u.dtype)


def step_start(method: Rosenbrock, field: Callable, J, t, u, h, fu, xp, tderiv: bool, ws):
    """What every Rosenbrock step starts with: ``(tableau, W-solver, factorised W, df/dt or None, evaluations
    of f so far)``; ``ws`` None: the method's dense W-solver."""
    tab: RosenbrockTableau = method.tableau
    ws = method.w_solver(False) if ws is None else ws
    fact = ws.factor(xp, J, h * tab.gamma)
    if tderiv and t is not None:
        return tab, ws, fact, time_derivative(xp, field, t, u, fu), 1
    return tab, ws, fact, None, 0


def rosenbrock_step(method: Rosenbrock, field: Callable, J, t, u, h, fu, xp, tderiv: bool = False,
                    ws=None) -> RosenbrockStep:
    """Advance ``u`` from ``t`` by ``h`` (``(B, 1)``, the state's dtype) with ``J`` the Jacobian of the field
    at ``(t, u)`` in the form of the W-solver ``ws`` (default: the method's dense one) and
    ``fu = field(t, u)``. ``t=None``: an autonomous field (``field(None, u)``)."""
    tab, ws, fact, T, nf = step_start(method, field, J, t, u, h, fu, xp, tderiv, ws)
    s = tab.stages
    hinv = 1.0 / h
    mix = tab.mix or ((),) * s
    Us, Fs = [], [fu]
    Y = u
    for i in range(s):
        if i > 0:
            incr = _combo(tab.a[i], Us)
            Y = u if incr is None else u + incr
            Fs.append(field(None if t is None else t + tab.nodes[i] * h, Y))
            nf += 1
        rhs = Fs[i]
        more = _combo(mix[i], Fs)
        if more is not None:
            rhs = rhs + more
        back = _combo(tab.couple[i], Us)
        if back is not None:
            rhs = rhs + back * hinv
        if T is not None and tab.d[i] != 0.0:
            rhs = rhs + (tab.d[i] * h) * T
        Us.append(ws.solve(xp, fact, rhs))
    if tab.fsal:
        u_new, f_new = Y, Fs[-1]
    else:
        u_new = u + _combo(tab.m, Us)
        f_new = field(None if t is None else t + h, u_new)
        nf += 1
    return RosenbrockStep(u_new, f_new, _combo(tab.m_err, Us), tuple(Us), nf, s, ws.factorizations)


def rosenbrock_attempt(el, method: Rosenbrock, ctrl: PIController, field: Callable, J, t, h, u, fu, err_prev,
                       rejected, reltol: float, abstol: float, tend: float, time_dependent: bool = True,
                       ws=None, step: Callable = None) -> Attempted:
    """:func:`~steadysolve.ode.adaptive.attempt` with a Rosenbrock step: ``J`` the field's Jacobian at
    ``(t, u)`` in the form of the W-solver ``ws``; ``attempted.rk`` is the :class:`RosenbrockStep`
    (its counts and stages). ``step``: the step function (default :func:`rosenbrock_step`; the small-system
    engine passes its one-system step, ``steadysolve._small.rosenbrock.small_rosenbrock_step``)."""
    step = rosenbrock_step if step is None else step
    h = el.minimum(h, tend - t)  # land exactly on tend
    tb = el.rows(t) if time_dependent else None
    r = step(method, field, J, tb, u, el.rows(h, u.dtype), fu, el.xp,
                        tderiv=time_dependent and not method.autonomous, ws=ws)
    order, error_order = method.tableau.control_orders
    return conclude(el, ctrl, order, error_order, t, h, u, fu, r, err_prev, rejected, reltol, abstol, tend)
