"""Inexact Newton with a matrix-free Krylov inner solver (Jacobian-free Newton-Krylov).

The Newton machinery (the line search with its watchdog as phases of the driver loop,
counters) lives in :class:`~steadysolve.algorithms.newton_base.NewtonBase` (see the notes of
``newton_base.py``); :class:`NewtonKrylov` gets its direction from GMRES on Jacobian-vector
products and adds the forcing terms, ``NewtonRaphson`` (``newton.py``) from a dense solve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..derivatives import fd_jvp
from ..linear.gmres import GMRES, gmres_2d
from ..registry import register
from ..retcodes import ReturnCode
from ..checks import check_int, check_positive
from .newton_base import NewtonBase, NewtonState

__all__ = ["NewtonKrylov", "NewtonBase", "NewtonState"]

_LSF = ReturnCode.LinearSolveFailed.code


#: with the default (Eisenstat-Walker) forcing, systems this small get an exact Newton direction
_EXACT_N = 8


@register("newton_krylov")
@dataclass(frozen=True)
class NewtonKrylov(NewtonBase):
    """Jacobian-free Newton-Krylov: inexact Newton steps ``J d = -F`` solved by GMRES
    on Jacobian-vector products, with Eisenstat-Walker forcing and a line search with a watchdog.

    Parameters
    ----------
    linsolve : a :class:`GMRES` (``restart``, ``abstol`` and ``maxiters`` are used; its
        ``reltol`` is replaced by the forcing term). Without ``maxiters`` one cycle of
        ``restart`` Krylov steps is allowed per Newton step; an inner solve that does
        not reach the forcing tolerance still gives a descent direction and is used.
    forcing : ``"eisenstat_walker"`` (choice 2: ``eta = 0.9 (||F_new|| / ||F_old||)^2``,
        safeguarded by ``0.9 eta_old^2`` when that exceeds 0.1, capped at ``eta_max``,
        and never below ``0.5 tol / ||F||`` to avoid oversolving), or a constant
        ``0 < eta < 1``.
    linesearch : ``"watchdog"`` (Armijo backtracking after a probe of the next Newton step, see
        :mod:`~steadysolve.algorithms.newton_base`), ``"armijo"`` (monotone backtracking) or
        ``None`` (full steps).
    jvp_step : relative step of the finite-difference JVP used when the problem has
        no ``jvp``: ``J v ~ (F(u + h v) - F(u)) / h`` with
        ``h = jvp_step * max(||u||_2, 1) / ||v||_2``; ``None`` uses ``sqrt(eps)``
        (the same rule as the solve context). Each such JVP costs one evaluation of
        ``F`` and is counted in ``njvp``, not ``nf``.
    recycle : number of previous Newton directions (unit vectors, per element) tried
        first as search directions of the next linear solve (flexible GMRES with
        augmentation, the LGMRES idea SciPy's ``newton_krylov`` uses). Successive
        Jacobians differ little, so these directions capture the slowly converging
        part of the spectrum; ``0`` gives plain GMRES. The Krylov steps of one
        Newton step are capped at ``restart + recycle`` unless ``linsolve.maxiters``.
    eta0 : first forcing term. eta_max : cap of the forcing terms.
    max_backtracks : rejected trials along one direction before the step is forced.

    Raises
    ------
    ValueError
        An invalid option (a constant ``forcing`` outside ``(0, 1)``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: u + 0.1 * u**3 - 1.0, np.zeros(50))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(linsolve=ss.GMRES(restart=10)), abstol=1e-10)
    >>> sol.retcode.name, np.round(sol.u[:2], 6)
    ('Success', array([0.921699, 0.921699]))
    """

    linsolve: GMRES = GMRES()
    forcing: Union[str, float] = "eisenstat_walker"
    linesearch: Optional[str] = "watchdog"
    jvp_step: Optional[float] = None
    eta0: float = 0.5
    eta_max: float = 0.9
    max_backtracks: int = 10
    recycle: int = 10

    def __post_init__(self):
        check_int("NewtonKrylov", "recycle", self.recycle, 0)
        if not isinstance(self.linsolve, GMRES):
            raise TypeError(f"NewtonKrylov: linsolve must be a GMRES instance, got {type(self.linsolve).__name__}")
        if isinstance(self.forcing, str):
            if self.forcing != "eisenstat_walker":
                raise ValueError(f"NewtonKrylov: forcing must be 'eisenstat_walker' or a number in (0, 1), "
                                 f"got {self.forcing!r}")
        else:
            check_positive("NewtonKrylov", "forcing", self.forcing)
            if not self.forcing < 1:
                raise ValueError(f"NewtonKrylov: a constant forcing term must be < 1, got {self.forcing}")
        check_positive("NewtonKrylov", "jvp_step", self.jvp_step, allow_none=True)
        check_positive("NewtonKrylov", "eta0", self.eta0)
        check_positive("NewtonKrylov", "eta_max", self.eta_max)
        if not (self.eta0 < 1 and self.eta_max < 1):
            raise ValueError("NewtonKrylov: eta0 and eta_max must be < 1")
        self._check_linesearch("NewtonKrylov")

    def _aux0(self, ctx, u0):
        if self.recycle == 0:
            return None
        return ctx.zeros((ctx.batch, min(self.recycle, ctx.n), ctx.n))

    def _eta0(self, ctx):
        return self.eta0 if isinstance(self.forcing, str) else float(self.forcing)

    def _next_eta(self, state, ctx, fn2_new, u_new, fu_new):
        xp = ctx.xp
        if not isinstance(self.forcing, str):
            return state.eta
        gamma = 0.9
        one = xp.ones_like(fn2_new)
        ratio2 = fn2_new / xp.where(state.fn2 > 0, state.fn2, one)
        eta = gamma * ratio2
        prev = gamma * state.eta * state.eta
        eta = xp.where(prev > 0.1, xp.maximum(eta, prev), eta)
        eta = xp.minimum(eta, xp.full_like(eta, self.eta_max))
        # Do not solve the linear system far below the nonlinear tolerance.
        tol = xp.maximum(xp.full_like(fn2_new, ctx.abstol), ctx.reltol * ctx.norm(u_new))
        fnorm = xp.sqrt(fn2_new)
        floor = 0.5 * tol / xp.where(fnorm > 0, fnorm, one)
        return xp.minimum(xp.maximum(eta, floor), xp.full_like(eta, self.eta_max))

    def _jvp(self, ctx):
        if self.jvp_step is None or not ctx.jvp_costs_f:
            return ctx.jvp
        return fd_jvp(ctx.xp, ctx.F, float(self.jvp_step))

    def _direction(self, prob, state, ctx, newton):
        xp = ctx.xp
        jvp = self._jvp(ctx)
        u, fu = state.u, state.fu
        ls = self.linsolve
        aug = state.aux
        restart = min(ls.restart, ctx.n)
        cap = restart + (0 if aug is None else aug.shape[1])
        eta, maxiters = state.eta, (ls.maxiters if ls.maxiters is not None else cap)
        if ctx.n <= _EXACT_N and isinstance(self.forcing, str) and ls.maxiters is None:
            # GMRES is exact in n steps (n JVPs): on a tiny system a loose inner solve saves almost
            # nothing and costs Newton steps (n = 2 Rosenbrock: 37 -> 27 iterations). A float
            # tolerance: no per-step array.
            eta, maxiters = min(100.0 * float(xp.finfo(ctx.dtype).eps), 0.01), ctx.n
        res = gmres_2d(xp, lambda v: jvp(u, v, fu), -fu, None, restart=restart,
                       reltol=eta, abstol=ls.abstol, maxiters=maxiters,
                       active=newton, aug=aug)
        bnorm = xp.sqrt(state.fn2)
        unusable = (res.codes == _LSF) & ~(res.resid < bnorm)
        unusable = unusable | ~xp.all(xp.isfinite(res.x), axis=1)
        d = xp.where(xp.reshape(unusable, (ctx.batch, 1)), xp.zeros_like(res.x), res.x)
        if aug is not None:
            B = ctx.batch
            dn = xp.sqrt(xp.sum(d * d, axis=1))
            push = newton & (dn > 0)
            unit = d / xp.reshape(xp.where(dn > 0, dn, xp.ones_like(dn)), (B, 1))
            shifted = xp.concat([xp.reshape(unit, (B, 1, ctx.n)), aug[:, :-1, :]], axis=1)
            aug = xp.where(xp.reshape(push, (B, 1, 1)), shifted, aug)
        return d, unusable, res.nmatvec, res.niter, aug
