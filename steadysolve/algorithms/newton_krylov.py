"""Inexact Newton with a matrix-free Krylov inner solver (Jacobian-free Newton-Krylov).

The Newton machinery (the line search with its watchdog as phases of the driver loop,
counters) lives in ``steadysolve.algorithms.newton_base.NewtonBase`` (see the notes of
``newton_base.py``); ``NewtonKrylov`` gets its direction from GMRES on Jacobian-vector
products and adds the forcing terms, ``NewtonRaphson`` (``newton.py``) from a dense solve.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Union

from .. import _backend as backend
from .._backend import l2
from ..linear.gmres import GMRES, gmres_2d
from ..linear.precond import Preconditioner, check_precond, due, setup_operator
from ..ode._elements import elements
from ..registry import register
from ..retcodes import ReturnCode
from .._checks import check_int, check_positive
from .newton_base import NewtonBase, NewtonState

__all__ = ["NewtonKrylov", "NewtonBase", "NewtonState", "KrylovCarry", "USEFUL"]

_LSF = ReturnCode.LinearSolveFailed.code
_MAXITERS = ReturnCode.MaxIters.code


class KrylovCarry(NamedTuple):
    """``NewtonKrylov``'s carry beyond the recycled directions: the growth of the Krylov budget (eager
    solves) and a :class:`~steadysolve.linear.precond.Preconditioner`'s data with its schedule (0-d
    counters: Python ints eagerly)."""

    aug: Any  # (B, k, n) recycled directions, or None
    scale: Any  # the Krylov budget of an inner solve is scale times the configured one (None: fixed)
    f2: Any  # (B,) ||F||^2 where each element computed its latest direction (a float for one system; growth)
    data: Any  # the preconditioner's setup
    since: Any  # Newton directions computed since the last setup
    ref: Any  # Krylov steps of the first inner solve after the last setup
    last: Any  # Krylov steps of the latest inner solve
    short: Any  # 1 when the latest inner solve stopped short of its tolerance
    nsetup: Any  # setups so far
    spent: Any  # products of a setup not counted yet (the one at the start)


#: a failed inner solve still gives a direction when it took the residual below this fraction of ||F||^2;
#: one that failed at its first step reports ||F|| itself, which squares to ||F||^2 only up to rounding
USEFUL = 1.0 - 1e-6
#: the Krylov budget grows after a truncated inner solve whose Newton step kept more than this fraction of ||F||
CRAWL = 0.5

#: a grown Krylov budget lengthens the restart cycle while the cycle's basis holds at most this many numbers
#: (8 MiB of float64: a last-level cache), and adds restart cycles beyond
BASIS_NUMBERS = 1 << 20

#: with the default (Eisenstat-Walker) forcing, systems this small get an exact Newton direction
_EXACT_N = 8


#: Krylov steps per Newton iteration under a DEQ budget (``under_budget``)
BUDGET_KRYLOV = 4


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
    krylov_growth
        The largest factor by which the Krylov budget of an inner solve grows: each time an inner
        solve stops at its cap short of the forcing tolerance (and Newton's step kept more than half
        of ``||F||``), the next ones get twice the Krylov steps, up to ``krylov_growth`` times
        ``linsolve.restart``, so that truncated inner solves do not make Newton crawl at linear speed
        on a large, stiff system. The restart cycle grows with the budget while its basis holds at
        most ``2**20`` numbers (8 MiB of float64); beyond, the budget is more cycles of that length,
        since a Krylov step costs a pass over the basis. ``1`` keeps the budget fixed.
        Under ``jax.jit`` too (the cap is a traced count), so a jitted solve takes the eager
        solve's Newton steps. A ``linsolve.maxiters`` you set is kept.
    precond
        A right preconditioner of the inner solves (see ``steadysolve.linear.precond``): a fixed
        linear callable ``M(v)`` on ``(batch, n)`` rows, or a ``Preconditioner`` (``ILU``, ``AMG``,
        ``Jacobi``, ``BlockJacobi`` or your own ``setup``/``apply``) set up from the Jacobian at the
        start and again on its ``refresh`` schedule (by default before every Newton direction); its
        Jacobian products count in ``njvp``, its setups in ``stats.extra["nprecond"]``. The
        tolerance of every inner solve stays on the true residual. A preconditioner that gives
        NaN/Inf or is singular stops the element with ``LinearSolveFailed``.
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
    precond: Union[None, Callable, Preconditioner] = None
    krylov_growth: int = 4

    def __post_init__(self):
        check_int("NewtonKrylov", "recycle", self.recycle, 0)
        check_int("NewtonKrylov", "krylov_growth", self.krylov_growth, 1)
        if not isinstance(self.linsolve, GMRES):
            raise TypeError(f"NewtonKrylov: linsolve must be a GMRES instance, got {type(self.linsolve).__name__}")
        if self.linsolve.precond is not None:
            raise ValueError("NewtonKrylov: give the preconditioner as NewtonKrylov(precond=...), which applies "
                             "it to (batch, n) rows and refreshes it, not as linsolve=GMRES(precond=...)")
        check_precond("NewtonKrylov", self.precond)
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

    def under_budget(self, reltol: float = 0.0) -> "NewtonKrylov":
        # an inexact Newton step of BUDGET_KRYLOV Krylov steps and no recycling: DEQ tolerances are loose,
        # and a budget spent on accurate inner solves leaves too few Newton steps
        if self.linsolve.maxiters is not None:
            return self
        ls = dataclasses.replace(self.linsolve, restart=BUDGET_KRYLOV, maxiters=BUDGET_KRYLOV)
        return dataclasses.replace(self, linsolve=ls, recycle=0)

    def _aux0(self, ctx, u0):
        aug = None if self.recycle == 0 else ctx.zeros((ctx.batch, min(self.recycle, ctx.n), ctx.n))
        pc = self.precond
        c = ctx.counter
        if not isinstance(pc, Preconditioner):
            if not self._grows(ctx):
                return aug
            fu0 = ctx.fu0
            return KrylovCarry(aug, c(1), ctx.xp.sum(fu0 * fu0, axis=1), None, c(0), c(0), c(0), c(0), c(0), c(0))
        if ctx.traced and not pc.traceable:
            raise TypeError(f"NewtonKrylov: the preconditioner {type(pc).__name__} works on the host and does not "
                            "run under jax.jit; use Jacobi or BlockJacobi there")
        data, nprod = setup_operator(pc, ctx, u0, ctx.fu0)
        grows, fu0 = self._grows(ctx), ctx.fu0
        return KrylovCarry(aug, c(1) if grows else None, ctx.xp.sum(fu0 * fu0, axis=1) if grows else None, data,
                           c(0), c(0), c(0), c(0), c(1), c(nprod))

    def _grows(self, ctx) -> bool:
        """Whether the Krylov budget may grow in this solve (no cap set by the user). Under ``jax.jit`` the
        scale is a traced counter and GMRES's buffers hold the largest cycle (``max_restart``)."""
        return self.krylov_growth > 1 and self.linsolve.maxiters is None

    @staticmethod
    def _split(aux):
        """``(recycled directions, KrylovCarry or None)`` of the carry."""
        return (aux.aug, aux) if isinstance(aux, KrylovCarry) else (aux, None)

    @staticmethod
    def _pick(ctx, cond, a, b):
        if ctx.traced:
            return ctx.xp.where(cond, a, b)
        return a if cond else b

    def preconditioner(self, ctx, u, fu, newton, carry):
        """``(M or None, carry, products spent)`` for the inner solve at rows ``u``: the fixed ``M``, or the
        ``Preconditioner`` set up again first where its schedule says so (``newton``: the elements computing
        a direction, ``None`` for all)."""
        pc = self.precond
        if not isinstance(pc, Preconditioner):  # None or a fixed callable
            return pc, carry, 0
        xp = ctx.xp
        when = due(pc, carry.since, carry.ref, carry.last, carry.short > 0)
        if newton is None:  # one system on the host
            (data, nprod), hit = (setup_operator(pc, ctx, u, fu), 1) if when else ((carry.data, 0), 0)
        else:
            (data, nprod), hit = backend.when_any(xp, newton & when, lambda _: setup_operator(pc, ctx, u, fu),
                                                  lambda _: (carry.data, 0), None)
        spent = carry.spent + nprod
        carry = carry._replace(data=data, spent=0 * carry.spent, nsetup=carry.nsetup + hit,
                               since=self._pick(ctx, hit > 0, 0 * carry.since, carry.since))

        def M(v):
            return pc.apply(data, v)

        return M, carry, spent

    def grown(self, ctx, carry, fn2, newton):
        """The carry with the Krylov budget for the inner solve at a point of ``||F||^2 = fn2`` (per element;
        ``newton`` as in :meth:`preconditioner`): doubled (up to ``krylov_growth``) when the latest inner
        solve stopped at its cap and the Newton step it gave took ``||F||`` down by less than half
        (``CRAWL``): truncated inner solves, Newton at a linear crawl."""
        if carry is None or carry.scale is None:
            return carry
        xp = ctx.xp
        if newton is None:  # one system: Python floats
            old = carry.f2 if isinstance(carry.f2, float) else float(backend.to_numpy(xp, carry.f2).reshape(-1)[0])
            crawl, f2 = fn2 > CRAWL * CRAWL * old, float(fn2)
        else:  # the elements not computing a direction keep their reference
            f2 = xp.where(newton, fn2, carry.f2)
            crawl = xp.any(newton & (fn2 > CRAWL * CRAWL * carry.f2))
            if ctx.traced:  # the same rule on the traced counters
                grow = (carry.short > 0) & crawl
                scale = xp.where(grow, xp.minimum(2 * carry.scale, self.krylov_growth), carry.scale)
                return carry._replace(scale=scale, f2=f2)
            crawl = backend.host_bool(crawl)
        scale = carry.scale
        if carry.short and crawl:
            scale = min(2 * scale, self.krylov_growth)
        return carry._replace(scale=scale, f2=f2)

    def after_solve(self, ctx, carry, niter, codes, newton):
        """The schedule's counts after an inner solve of ``niter`` Krylov steps (``newton`` as above)."""
        if carry is None:
            return None
        xp = ctx.xp
        if newton is None:
            ran, short = 1, int(int(codes) == _MAXITERS)
        elif ctx.traced:
            ran = xp.astype(xp.any(newton), xp.int32)
            short = xp.astype(xp.any(newton & (codes == _MAXITERS)), xp.int32)
        else:
            ran = int(backend.host_bool(xp.any(newton)))
            short = int(ran > 0 and backend.host_bool(xp.any(newton & (codes == _MAXITERS))))
        return carry._replace(ref=self._pick(ctx, (carry.since == 0) & (ran > 0), niter + 0 * carry.ref, carry.ref),
                              last=self._pick(ctx, ran > 0, niter + 0 * carry.last, carry.last),
                              short=self._pick(ctx, ran > 0, short + 0 * carry.short, carry.short),
                              since=carry.since + ran)

    def extra_stats(self, state) -> dict:
        out = super().extra_stats(state)
        if isinstance(state.aux, KrylovCarry) and isinstance(self.precond, Preconditioner):
            out["nprecond"] = state.aux.nsetup
        return out

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

    def inner_solve(self, ctx, eta, aug, scale=1):
        """``(restart, reltol, maxiters)`` of the GMRES solve of a Newton step with forcing term ``eta``,
        recycled directions ``aug`` and the Krylov budget grown ``scale`` times (a traced counter under
        ``jax.jit``: then ``restart`` and ``maxiters`` are traced too, see :meth:`max_restart`)."""
        ls = self.linsolve
        # The budget grows in the cycle's length while its basis stays within BASIS_NUMBERS, and in restart
        # cycles beyond: each Krylov step orthogonalises against the whole basis of its cycle, which is
        # cheap while the basis stays in the cache and, once it does not, costs more than the evaluation
        # of F (n >= 1e4); a longer cycle converges in fewer steps (docs/benchmarks.md, issue 28).
        longest = self.max_restart(ctx)
        if ctx.traced and not isinstance(scale, int):
            steps = ctx.xp.minimum(ls.restart * scale, ctx.n)
            restart = ctx.xp.minimum(steps, longest)
        else:
            steps = min(ls.restart * scale, ctx.n)
            restart = min(steps, longest)
        maxiters = ls.maxiters if ls.maxiters is not None else steps + (0 if aug is None else aug.shape[1])
        if ctx.n <= _EXACT_N and isinstance(self.forcing, str) and ls.maxiters is None:
            # GMRES is exact in n steps (n JVPs): on a tiny system a loose inner solve saves almost
            # nothing and costs Newton steps. A float tolerance: no per-step array.
            eta, maxiters = min(100.0 * float(ctx.xp.finfo(ctx.dtype).eps), 0.01), ctx.n
        return restart, eta, maxiters

    def max_restart(self, ctx) -> int:
        """The longest cycle an inner solve may run (the size of GMRES's buffers under ``jax.jit``): the
        grown budget while the basis (``batch * n`` numbers a vector) fits in ``BASIS_NUMBERS``, never
        shorter than ``linsolve.restart``."""
        ls = self.linsolve
        grown = ls.restart * (self.krylov_growth if self._grows(ctx) else 1)
        return min(grown, max(ls.restart, BASIS_NUMBERS // (ctx.batch * ctx.n)), ctx.n)

    def _direction(self, prob, state, ctx, newton):
        xp, B = ctx.xp, ctx.batch
        u, fu = state.u, state.fu
        aug, carry = self._split(state.aux)
        carry = self.grown(ctx, carry, state.fn2, newton)
        restart, eta, maxiters = self.inner_solve(ctx, state.eta, aug, 1 if carry is None or carry.scale is None else carry.scale)
        M, carry, dpc = self.preconditioner(ctx, u, fu, newton, carry)
        # the Jacobian at u, applied by every Krylov step (finite differences: u's part of the step once)
        jvp_u = ctx.products.linearize(u, fu, self.jvp_step)
        res = gmres_2d(xp, jvp_u, -fu, None, restart=restart, reltol=eta, abstol=self.linsolve.abstol,
                       maxiters=maxiters, active=newton, aug=aug, precond=M,
                       max_restart=self.max_restart(ctx) if ctx.traced else None)
        carry = self.after_solve(ctx, carry, res.niter, res.codes, newton)
        x = res.x
        unusable = ((res.codes == _LSF) & ~(res.resid * res.resid < USEFUL * state.fn2)) | ~xp.all(xp.isfinite(x), axis=1)
        d = xp.where(xp.reshape(unusable, (B, 1)), 0.0, x)
        if aug is not None:
            dn = l2(xp, d)
            push = newton & (dn > 0)
            unit = d / xp.reshape(xp.where(dn > 0, dn, 1.0), (B, 1))
            # the elements that push shift their directions by one slot (newest first). A new array, not
            # a write in place: the watchdog's failed probe restores the previous set (newton_base.py)
            shifted = xp.concat([xp.reshape(unit, (B, 1, ctx.n)), aug[:, :-1, :]], axis=1)
            aug = xp.where(xp.reshape(push, (B, 1, 1)), shifted, aug)
        aux = aug if carry is None else carry._replace(aug=aug)
        return d, unusable, res.nmatvec + dpc, res.niter, aux
