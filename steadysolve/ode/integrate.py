"""``integrate``: adaptive Runge-Kutta (or, for stiff systems, Rosenbrock) integration returning the path.

DEQ users plot how the state evolves with depth (time), not only where it ends;
``integrate`` gives ``(ts, us)`` with the same integrator and controller that
``steadysolve.DynamicSS`` uses. The whole ``u0`` is one ODE system (one step
size); for independent systems with their own steps use ``jax.vmap`` or
``solve(..., DynamicSS(), batch_axis=...)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

from .. import _backend as backend
from .._backend.derivatives import Products
from .._checks import check_int, check_real, check_tol, reject_unknown
from ..problems import check_output, validate_u0
from ..solution import ODESolution, ReturnCode, Stats, register_jax_pytrees
from ._rosenbrock_step import rosenbrock_attempt
from ._elements import elements
from .adaptive import attempt, first_step, time_dtype
from .controller import PIController
from .rosenbrock import Rosenbrock
from .runge_kutta import dense_eval, stage_buffer
from .tsit5 import ExplicitRK, Tsit5

if TYPE_CHECKING:
    from typing_extensions import Never  # typing.Never from Python 3.11

__all__ = ["integrate", "ODESolution"]

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code
_NONFINITE = ReturnCode.NonFinite.code
_STALLED = ReturnCode.Stalled.code


def _host_floats(xp, x) -> list:
    """A small array as a list of Python floats (one host transfer)."""
    return [float(v) for v in backend.to_numpy(xp, x).reshape(-1).tolist()]


def integrate(f: Callable, u0, tspan, solver: Optional[ExplicitRK] = None, *, p=None, saveat=None,
              reltol: Optional[float] = None, abstol: Optional[float] = None,
              controller: Optional[PIController] = None,
              dt0: Optional[float] = None, maxiters: int = 100_000, jac: Optional[Callable] = None,
              **unknown: Never) -> ODESolution:
    """Integrate ``du/dt = f(u, p, t)`` from ``tspan[0]`` to ``tspan[1]``.

    Parameters
    ----------
    f
        ``f(u, p, t) -> du/dt`` (same shape and dtype as ``u``); ``t`` is a 0-d array.
    u0
        Initial state, any shape, any supported array library.
    tspan
        ``(t0, t1)`` with ``t1 > t0`` (Python numbers).
    solver
        An explicit RK method, ``Tsit5`` by default, or a Rosenbrock method (``Rodas5P``, ...) for
        stiff systems.
    saveat
        Times (a 1-D sequence of numbers inside ``[t0, t1]``, non-decreasing)
        at which to return the state, from the integrator's free dense output;
        ``None`` returns every accepted step (eager only: under ``jax.jit`` the number
        of steps is not known in advance, so pass ``saveat``).
    reltol
        Local error tolerance (used unless ``controller`` sets its own); default ``reltol=1e-6,
        abstol=1e-9``; when only one is given, the other is 0.
    abstol
        As ``reltol``.
    controller
        A ``PIController`` for the other step-size knobs.
    dt0
        First step size; ``None`` chooses it automatically (one evaluation).
    maxiters
        Cap on attempted steps (accepted plus rejected).
    jac
        ``jac(u, p, t) -> (n, n)``, the Jacobian of ``f`` for a Rosenbrock method (default: automatic
        differentiation on PyTorch/JAX, finite differences otherwise; rebuilt at every attempt).

    Returns
    -------
    ODESolution
        ``ts``, ``us``, ``t``, the return code and ``stats`` (``nf``, ``niter``, ``naccept``, ``nreject``;
        with a Rosenbrock method also ``njvp`` (Jacobian columns), ``njac``, ``nfact``, ``nsolve``).

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.integrate(lambda u, p, t: -u, np.ones(1), (0.0, 1.0), ss.Tsit5(), saveat=[0.0, 1.0])
    >>> np.round(sol.us[:, 0], 6), sol.retcode
    (array([1.      , 0.367879]), <ReturnCode.Success: ...>)
    """
    reject_unknown("integrate()", unknown, ("p", "saveat", "reltol", "abstol", "controller", "dt0", "maxiters", "jac"),
                   {"rtol": "reltol", "atol": "abstol", "t_eval": "saveat", "first_step": "dt0"})
    solver = Tsit5() if solver is None else solver
    if not callable(f):
        raise TypeError(f"integrate: f must be callable, got {type(f).__name__}")
    if not isinstance(solver, (ExplicitRK, Rosenbrock)):
        raise TypeError(f"integrate: solver must be an explicit Runge-Kutta method such as Tsit5() or a Rosenbrock "
                        f"method such as Rodas5P(), got {type(solver).__name__}")
    if jac is not None and not (callable(jac) and isinstance(solver, Rosenbrock)):
        raise TypeError("integrate: jac must be a callable jac(u, p, t), used by a Rosenbrock solver only")
    if isinstance(solver, Rosenbrock) and solver.w_solver(False).jacobian != "dense":
        raise ValueError(f"integrate: a Rosenbrock solver here takes a dense Jacobian (DenseLU); "
                         f"{type(solver.linsolve).__name__} needs a problem's sparse Jacobian (DynamicSS)")
    controller = PIController() if controller is None else controller
    if not isinstance(controller, PIController):
        raise TypeError(f"integrate: controller must be a PIController, got {type(controller).__name__}")
    abstol, reltol = check_tol("integrate", "abstol", abstol), check_tol("integrate", "reltol", reltol)
    if abstol is None and reltol is None:
        abstol, reltol = 1e-9, 1e-6
    reltol, abstol = controller.tolerances(reltol or 0.0, abstol or 0.0)
    maxiters = check_int("integrate", "maxiters", maxiters, 1)
    if not isinstance(tspan, (tuple, list)) or len(tspan) != 2:
        raise ValueError(f"integrate: tspan must be a pair (t0, t1), got {tspan!r}")
    t0, t1 = check_real("integrate", "tspan[0]", tspan[0]), check_real("integrate", "tspan[1]", tspan[1])
    if not t1 > t0:
        raise ValueError(f"integrate: tspan must satisfy t1 > t0, got {tspan!r}")
    if dt0 is not None:
        dt0 = check_real("integrate", "dt0", dt0)
        if dt0 <= 0:
            raise ValueError(f"integrate: dt0 must be > 0, got {dt0}")
    validate_u0(u0, p, "integrate")
    xp = backend.namespace(("u0", u0), ("p", p))
    save = None
    if saveat is not None:
        if backend.is_array(saveat):
            if backend.is_traced(saveat):
                raise TypeError("integrate: saveat must be concrete (it fixes the output shape)")
            ns = backend.namespace(("saveat", saveat))
            saveat = _host_floats(ns, saveat)
        try:
            save = [float(s) for s in saveat]
        except TypeError as e:
            raise TypeError(f"integrate: saveat must be a 1-D sequence of numbers, got {type(saveat).__name__}") from e
        if not save:
            raise ValueError("integrate: saveat is empty")
        if any(not (t0 <= s <= t1) for s in save):
            raise ValueError(f"integrate: every saveat time must lie in [t0, t1] = [{t0}, {t1}]")
        if any(b < a for a, b in zip(save, save[1:])):
            raise ValueError("integrate: saveat must be non-decreasing")

    shape = tuple(u0.shape)
    n = math.prod(shape)
    dtype, device = u0.dtype, backend.device_of(u0)
    f_t0 = f(u0, p, xp.asarray(t0, dtype=dtype, device=device))
    check_output("f(u, p, t)", f_t0, u0, xp)

    def F(t, u):
        return xp.reshape(f(xp.reshape(u, shape), p, backend.cast(xp, xp.reshape(t, ()), dtype)), (1, n))

    tab = solver.tableau
    u = xp.reshape(u0, (1, n))
    fu = xp.reshape(f_t0, (1, n))
    tdt = time_dtype(xp, dtype)
    t = xp.full((1,), t0, dtype=tdt, device=device)
    el = elements(xp)
    h, nf0 = first_step(el, tab, controller, F, t, u, fu, reltol, abstol, dt0, t1)
    nf = 1 + nf0

    traced = any(backend.is_traced(x) for x in backend.tree_leaves((u0, p, f_t0)))
    stiff = isinstance(solver, Rosenbrock)
    if stiff:
        def step(t, h, u, fu, err_prev, rejected):
            J = _jacobian(xp, F, jac, p, shape, dtype, t, u, fu)
            return rosenbrock_attempt(el, solver, controller, F, J, t, h, u, fu, err_prev, rejected, reltol, abstol, t1)
    else:
        work = None if traced else stage_buffer(xp, tab, u)

        def step(t, h, u, fu, err_prev, rejected):
            return attempt(el, tab, controller, F, t, h, u, fu, err_prev, rejected, reltol, abstol, t1, work=work)

    def interp(u, h, ks, theta):  # the stages carry their step (h k_i; a Rosenbrock step's U_i)
        return dense_eval(tab, u, ks, theta)

    if traced:
        if save is None:
            raise ValueError("integrate: inside jax.jit / vmap pass saveat (the number of accepted steps "
                             "is not known at trace time)")
        register_jax_pytrees()
        sol = _integrate_jax(interp, step, t, h, u, fu, save, nf, maxiters, shape, dtype, t0)
        return _stiff_counts(sol, solver, n, jac) if stiff else sol

    ts_out, us_out = [], []
    k = 0
    if save is None:
        ts_out.append(t0)
        us_out.append(u)
    else:
        while k < len(save) and save[k] <= t0:
            ts_out.append(save[k])
            us_out.append(u)
            k += 1
    err_prev = xp.full_like(t, 1e-4)
    rejected = t != t
    naccept = nreject = it = 0
    code = _MAXITERS
    t_host = t0
    while it < maxiters:
        a = step(t, h, u, fu, err_prev, rejected)
        it += 1
        nf += a.rk.nf
        acc_f, fin_f, tiny_f, tnew_f, h_f = _host_floats(xp, xp.concat([
            xp.astype(a.accept, tdt), xp.astype(a.finite, tdt), xp.astype(a.underflow, tdt), a.t, a.h_used]))
        accepted = acc_f == 1.0
        if accepted:
            naccept += 1
            if save is None:
                ts_out.append(tnew_f)
                us_out.append(a.u)
            else:
                while k < len(save) and save[k] <= tnew_f:
                    theta = min(max((save[k] - t_host) / h_f, 0.0), 1.0)
                    ts_out.append(save[k])
                    us_out.append(interp(u, h_f, a.rk.ks, theta))
                    k += 1
            t_host = tnew_f
        else:
            nreject += 1
        u, fu, t, h, err_prev, rejected = a.u, a.fu, a.t, a.h, a.err_prev, a.rejected
        if accepted and t_host >= t1:
            code = _SUCCESS
            break
        if not accepted and tiny_f == 1.0:
            code = _STALLED if fin_f == 1.0 else _NONFINITE
            break
    if save is not None and k < len(save):  # stopped early: the remaining points are unknown
        nan_row = xp.full((1, n), math.nan, dtype=dtype, device=device)
        for s in save[k:]:
            ts_out.append(s)
            us_out.append(nan_row)
    ts = xp.asarray(ts_out, dtype=dtype, device=device)
    us = xp.reshape(xp.concat(us_out, axis=0), (len(us_out),) + shape)
    stats = Stats(nf=nf, niter=it, extra={"naccept": naccept, "nreject": nreject})
    sol = ODESolution(ts, us, t_host, [code], stats)
    return _stiff_counts(sol, solver, n, jac) if stiff else sol


def _jacobian(xp, F, jac, p, shape, dtype, t, u, fu):
    """The Jacobian ``(1, n, n)`` of ``F(t, .)`` at ``u``: the user's ``jac(u, p, t)``, or AD / finite differences."""
    tb = xp.reshape(t, (1, 1))
    if jac is not None:
        n = u.shape[1]
        return xp.reshape(jac(xp.reshape(u, shape), p, backend.cast(xp, xp.reshape(t, ()), dtype)), (1, n, n))
    return Products(xp, lambda v: F(tb, v)).jacobian(u, fu)[0]


def _stiff_counts(sol, solver, n, jac):
    """A Rosenbrock solve's linear-algebra counts: one Jacobian (``n`` columns unless ``jac`` is given),
    one factorisation and one solve per stage at every attempt."""
    it = sol.stats.niter
    sol.stats.njvp = 0 if jac is not None else n * it
    sol.stats.extra.update(njac=it, nfact=solver.w_solver(False).factorizations * it, nsolve=solver.tableau.stages * it)
    return sol


def _integrate_jax(interp, step, t, h, u, fu, save, nf, maxiters, shape, dtype, t0):
    import jax
    import jax.numpy as jnp

    n = u.shape[1]
    m = len(save)
    save_a = jnp.asarray(save, dtype=dtype)
    nan = jnp.full((m, n), jnp.nan, dtype=dtype)
    at_start = save_a <= t0
    buf = jnp.where(at_start[:, None], u, nan)
    k = jnp.sum(at_start.astype(jnp.int32))
    i32 = jnp.int32
    carry = (t, h, u, fu, jnp.full_like(t, 1e-4), t != t, k, buf, i32(0), i32(0), i32(0), i32(nf), i32(-1))

    def cond(c):
        return (c[-1] < 0) & (c[10] < maxiters)

    def body(c):
        t, h, u, fu, err_prev, rejected, k, buf, na, nr, it, nfc, code = c
        a = step(t, h, u, fu, err_prev, rejected)
        acc = a.accept[0]

        def save_cond(s):
            kk, _ = s
            return acc & (kk < m) & (save_a[jnp.minimum(kk, m - 1)] <= a.t[0])

        def save_body(s):
            kk, b = s
            theta = jnp.clip((save_a[kk] - t[0]) / a.h_used[0], 0.0, 1.0).astype(u.dtype)
            return kk + 1, b.at[kk].set(interp(u, a.h_used[0].astype(u.dtype), a.rk.ks, theta)[0])

        k, buf = jax.lax.while_loop(save_cond, save_body, (k, buf))
        code = jnp.where(a.reached[0], i32(_SUCCESS), code)
        code = jnp.where(~acc & a.underflow[0], jnp.where(a.finite[0], i32(_STALLED), i32(_NONFINITE)), code)
        return (a.t, a.h, a.u, a.fu, a.err_prev, a.rejected, k, buf, na + acc.astype(i32),
                nr + (~acc).astype(i32), it + 1, nfc + a.rk.nf, code)

    t, h, u, fu, _, _, k, buf, na, nr, it, nfc, code = jax.lax.while_loop(cond, body, carry)
    code = jnp.where(code < 0, i32(_MAXITERS), code)
    stats = Stats(nf=nfc, niter=it, extra={"naccept": na, "nreject": nr})
    return ODESolution(save_a, jnp.reshape(buf, (m,) + shape), t[0], code, stats)
