"""Inexact Newton with a matrix-free Krylov inner solver (Jacobian-free Newton-Krylov).

The Newton machinery (the line search with its watchdog as phases of the driver loop,
counters) lives in ``steadysolve.algorithms.newton_base.NewtonBase`` (see the notes of
``newton_base.py``); ``NewtonKrylov`` gets its direction from GMRES on Jacobian-vector
products and adds the forcing terms, ``NewtonRaphson`` (``newton.py``) from a dense solve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .. import _backend as backend
from .._backend import l2
from ..linear.gmres import GMRES, gmres_2d
from ..ode._elements import elements
from ..registry import register
from ..retcodes import ReturnCode
from .._checks import check_int, check_positive
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
    linsolve
        A ``GMRES`` (``restart``, ``abstol`` and ``maxiters`` are used; its
        ``reltol`` is replaced by the forcing term). Without ``maxiters`` one cycle of
        ``restart`` Krylov steps is allowed per Newton step; an inner solve that does
        not reach the forcing tolerance still gives a descent direction and is used.
    forcing
        ``"eisenstat_walker"`` (choice 2: ``eta = 0.9 (||F_new|| / ||F_old||)^2``,
        safeguarded by ``0.9 eta_old^2`` when that exceeds 0.1, capped at ``eta_max``,
        and never below ``0.5 tol / ||F||`` to avoid oversolving), or a constant
        ``0 < eta < 1``.
    linesearch
        ``"watchdog"`` (Armijo backtracking after a probe of the next Newton step, see
        ``steadysolve.algorithms.newton_base``), ``"armijo"`` (monotone backtracking) or
        ``None`` (full steps).
    jvp_step
        Relative step of the finite-difference JVP used when the problem has
        no ``jvp``: ``J v ~ (F(u + h v) - F(u)) / h`` with
        ``h = jvp_step * max(||u||_2, 1) / ||v||_2``; ``None`` uses ``sqrt(eps)``
        (the same rule as the solve context). Each such JVP costs one evaluation of
        ``F``, counted in ``nf`` (a call of ``F``) and in ``njvp`` (a product).
    recycle
        Number of previous Newton directions (unit vectors, per element) tried
        first as search directions of the next linear solve (flexible GMRES with
        augmentation, the LGMRES idea SciPy's ``newton_krylov`` uses). Successive
        Jacobians differ little, so these directions capture the slowly converging
        part of the spectrum; ``0`` gives plain GMRES. The Krylov steps of one
        Newton step are capped at ``restart + recycle`` unless ``linsolve.maxiters``.
    eta0
        First forcing term. eta_max : cap of the forcing terms.
    max_backtracks
        Rejected trials along one direction before the step is forced.

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

    def cost(self, n: int) -> int:  # one evaluation and the Krylov steps of one inexact Newton step
        return 1 + (self.linsolve.maxiters if self.linsolve.maxiters is not None else self.linsolve.restart + self.recycle)

    def _aux0(self, ctx, u0):
        if self.recycle == 0:
            return None
        return ctx.zeros((ctx.batch, min(self.recycle, ctx.n), ctx.n))

    def _eta0(self, ctx):
        return self.eta0 if isinstance(self.forcing, str) else float(self.forcing)

    def _next_eta(self, state, ctx, fn2_new, u_new, fu_new):
        if not isinstance(self.forcing, str):
            return state.eta
        xp, rt = ctx.xp, ctx.reltol
        tol = ctx.abstol if rt == 0 else xp.maximum(rt * ctx.norm(u_new), ctx.abstol)
        eta = self.forcing_term(elements(xp), fn2_new, state.fn2, state.eta, tol)
        # (the norms of a half-precision state are float32: the carry keeps the state's dtype)
        return backend.cast(xp, eta, state.eta.dtype)

    def forcing_term(self, el, f2, f2_old, eta_old, tol):
        """The next forcing term per element (on the namespace ``el`` of per-element scalars), from
        ``||F||^2`` after and before the step, the last term and the nonlinear tolerance: Eisenstat and
        Walker's choice 2, safeguarded, and never far below the tolerance (no oversolving):
        ``min(max(0.9 r^2, [0.9 eta_old^2 if > 0.1], 0.5 tol / ||F||), eta_max)``."""
        eta = 0.9 * f2 / el.where(f2_old > 0, f2_old, 1.0)
        prev = 0.9 * eta_old * eta_old
        eta = el.maximum(eta, el.where(prev > 0.1, prev, 0.0))
        floor = (0.5 * tol) / el.sqrt(el.where(f2 > 0, f2, 1.0))
        return el.minimum(el.maximum(eta, floor), self.eta_max)

    def inner_solve(self, ctx, eta, aug):
        """``(restart, reltol, maxiters)`` of the GMRES solve of a Newton step with forcing term ``eta`` and
        recycled directions ``aug``."""
        ls = self.linsolve
        restart = min(ls.restart, ctx.n)
        cap = restart + (0 if aug is None else aug.shape[1])
        maxiters = ls.maxiters if ls.maxiters is not None else cap
        if ctx.n <= _EXACT_N and isinstance(self.forcing, str) and ls.maxiters is None:
            # GMRES is exact in n steps (n JVPs): on a tiny system a loose inner solve saves almost
            # nothing and costs Newton steps. A float tolerance: no per-step array.
            eta, maxiters = min(100.0 * float(ctx.xp.finfo(ctx.dtype).eps), 0.01), ctx.n
        return restart, eta, maxiters

    def _direction(self, prob, state, ctx, newton):
        xp, B = ctx.xp, ctx.batch
        u, fu, aug = state.u, state.fu, state.aux
        restart, eta, maxiters = self.inner_solve(ctx, state.eta, aug)
        # the Jacobian at u, applied by every Krylov step (finite differences: u's part of the step once)
        jvp_u = ctx.products.linearize(u, fu, self.jvp_step)
        res = gmres_2d(xp, jvp_u, -fu, None, restart=restart, reltol=eta, abstol=self.linsolve.abstol,
                       maxiters=maxiters, active=newton, aug=aug)
        x = res.x
        unusable = ((res.codes == _LSF) & ~(res.resid * res.resid < state.fn2)) | ~xp.all(xp.isfinite(x), axis=1)
        d = xp.where(xp.reshape(unusable, (B, 1)), 0.0, x)
        if aug is not None:
            dn = l2(xp, d)
            push = newton & (dn > 0)
            unit = d / xp.reshape(xp.where(dn > 0, dn, 1.0), (B, 1))
            # the elements that push shift their directions by one slot (newest first). A new array, not
            # a write in place: the watchdog's failed probe restores the previous set (newton_base.py)
            shifted = xp.concat([xp.reshape(unit, (B, 1, ctx.n)), aug[:, :-1, :]], axis=1)
            aug = xp.where(xp.reshape(push, (B, 1, 1)), shifted, aug)
        return d, unusable, res.nmatvec, res.niter, aug
