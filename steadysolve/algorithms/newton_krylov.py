"""Inexact Newton with a matrix-free Krylov inner solver (Jacobian-free Newton-Krylov).

The Newton machinery (line search as a phase of the driver loop, forcing terms,
counters) lives in :class:`NewtonBase`; :class:`NewtonKrylov` gets its
direction from GMRES on Jacobian-vector products, ``NewtonRaphson``
(``newton.py``) from a dense solve.

Line search without data-dependent control flow
-----------------------------------------------
Every driver iteration evaluates ``F`` exactly once, at a trial point
``u + lam * d``. An element is either in its *Newton phase* (``nback == 0``:
compute a new direction ``d``, try ``lam = 1``) or in a *backtracking phase*
(``nback > 0``: keep ``d``, try the smaller ``lam`` chosen from the previous
rejection). The Armijo test ``||F(u + lam d)|| <= (1 - 1e-4 lam) ||F(u)||`` (2-norms)
accepts or rejects the trial per element with ``where``; rejected and non-finite
trials shrink ``lam`` by safeguarded quadratic interpolation (to within
``[0.1, 0.5] * lam``; ``0.25 * lam`` after a NaN/Inf trial). No trial is ever
wasted and a full Newton step costs one evaluation, so when no backtracking is
needed (the usual case) the cost is one ``F`` per Newton step plus the JVPs.
After ``max_backtracks`` rejections the last finite trial is taken anyway
(as SciPy does); a non-finite one then stops the element with ``Stalled``.
Backtracking iterations count as driver iterations (``maxiters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union

from .. import backend
from ..linear.gmres import GMRES, gmres_2d
from ..registry import register
from ..retcodes import ReturnCode
from ..checks import check_int, check_positive
from .base import Algorithm

__all__ = ["NewtonKrylov", "NewtonBase", "NewtonState"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code
ARMIJO_C = 1e-4


class NewtonState(NamedTuple):
    u: Any
    fu: Any
    fn2: Any  # (B,) ||F(u)||_2^2
    d: Any  # (B, n) current Newton direction
    lam: Any  # (B,) step length of the next trial
    nback: Any  # (B,) int32: rejected trials along d so far (0 = Newton phase)
    eta: Any  # (B,) forcing term for the next linear solve
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    nlinsolve: Any  # 0-d: linear solves (Newton directions computed)
    nlinear: Any  # 0-d: Krylov steps (or dense Jacobians for NewtonRaphson)
    nbacktrack: Any  # 0-d: rejected trial points
    aux: Any = None  # algorithm-specific carry (NewtonKrylov: recycled directions (B, k, n))


#: with the default (Eisenstat-Walker) forcing, systems this small get an exact Newton direction
_EXACT_N = 8


class NewtonBase(Algorithm):
    """Shared Newton loop: subclasses provide ``_direction`` and the option fields
    ``linesearch``, ``max_backtracks``."""

    stall_patience = None  # backtracking iterations do not improve the residual by design

    def _check_linesearch(self, owner):
        if self.linesearch not in ("armijo", None):
            raise ValueError(f"{owner}: linesearch must be 'armijo' or None, got {self.linesearch!r}")
        check_int(owner, "max_backtracks", self.max_backtracks, 1)

    def _eta0(self, ctx):
        return 0.0

    def _aux0(self, ctx, u0):
        return None

    def init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        fu = ctx.fu0
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        ones = xp.ones((B,), dtype=ctx.dtype, device=ctx.device)
        return NewtonState(
            u=u0, fu=fu, fn2=xp.sum(fu * fu, axis=1), d=xp.zeros_like(u0), lam=ones, nback=zi,
            eta=self._eta0(ctx) * ones, flag=zi,
            nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0),
            nlinsolve=ctx.counter(0), nlinear=ctx.counter(0), nbacktrack=ctx.counter(0),
            aux=self._aux0(ctx, u0),
        )

    def _direction(self, prob, state, ctx, newton):  # pragma: no cover - interface
        """-> (d (B, n), unusable (B,) bool, njvp increment, nlinear increment, new aux)."""
        raise NotImplementedError

    def _next_eta(self, state, ctx, fn2_new, u_new, fu_new):
        return state.eta

    def step(self, prob, state, ctx):
        xp, B = ctx.xp, ctx.batch
        newton = state.nback == 0
        d_new, unusable, dj, dl, aux = self._direction(prob, state, ctx, newton)
        nb = xp.reshape(newton, (B, 1))
        d = xp.where(nb, d_new, state.d)
        one = xp.ones_like(state.lam)
        lam = xp.where(newton, one, state.lam)
        trial = state.u + xp.reshape(lam, (B, 1)) * d
        ft = ctx.F(trial)
        ftn2 = xp.sum(ft * ft, axis=1)
        finite = xp.isfinite(ftn2)
        bad_dir = newton & unusable
        if self.linesearch is None:
            accept = ~bad_dir
            nback = state.nback
            lam_next = one
            flag = xp.where(bad_dir, xp.full_like(state.flag, _LSF), state.flag)
        else:
            fn2 = state.fn2
            shrink = 1.0 - ARMIJO_C * lam
            armijo = finite & (ftn2 <= shrink * shrink * fn2)
            nback = state.nback + 1
            give_up = nback > self.max_backtracks
            accept = ~bad_dir & (armijo | (give_up & finite))
            # Quadratic model of phi(l) = ||F(u + l d)||^2 with phi'(0) = -2 phi(0).
            den = ftn2 - fn2 + 2.0 * lam * fn2
            safe = xp.where(den > 0, den, one)
            lam_q = xp.where(den > 0, lam * lam * fn2 / safe, 0.5 * lam)
            lam_q = xp.minimum(xp.maximum(lam_q, 0.1 * lam), 0.5 * lam)
            lam_next = xp.where(finite, lam_q, 0.25 * lam)
            flag = xp.where(bad_dir, xp.full_like(state.flag, _LSF), state.flag)
            flag = xp.where(~bad_dir & give_up & ~finite, xp.full_like(state.flag, _STALLED), flag)
            nback = xp.where(accept, xp.zeros_like(nback), nback)
            lam_next = xp.where(accept, one, lam_next)
        ab = xp.reshape(accept, (B, 1))
        u = xp.where(ab, trial, state.u)
        fu = xp.where(ab, ft, state.fu)
        fn2_new = xp.where(accept, ftn2, state.fn2)
        eta = xp.where(accept, self._next_eta(state, ctx, ftn2, trial, ft), state.eta)
        nrej = xp.astype(xp.sum(xp.astype(~accept & ~bad_dir, xp.int32)), xp.int32)
        nnewton = xp.astype(xp.any(newton), xp.int32)
        return NewtonState(u, fu, fn2_new, d, lam_next, nback, eta, flag,
                           state.nf + 1, state.njvp + dj, state.nvjp, state.nlinsolve + nnewton,
                           state.nlinear + dl, state.nbacktrack + nrej, aux)

    def extra_stats(self, state) -> dict:
        return {"nlinsolve": state.nlinsolve, "nlinear": state.nlinear, "nbacktrack": state.nbacktrack}


@register("newton_krylov")
@dataclass(frozen=True)
class NewtonKrylov(NewtonBase):
    """Jacobian-free Newton-Krylov: inexact Newton steps ``J d = -F`` solved by GMRES
    on Jacobian-vector products, with Eisenstat-Walker forcing and an Armijo line search.

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
    linesearch : ``"armijo"`` (see the module notes) or ``None`` (full steps).
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
    linesearch: Optional[str] = "armijo"
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
        if not isinstance(self.forcing, str):
            return state.eta
        xp = ctx.xp
        emax, rt = self.eta_max, ctx.reltol
        if ctx.host_arrays and ctx.batch == 1:  # one system on NumPy: host floats, one array out
            f2, f2_old, e_old = float(fn2_new[0]), float(state.fn2[0]), float(state.eta[0])
            eta = 0.9 * f2 / f2_old if f2_old > 0 else 0.9 * f2
            prev = 0.9 * e_old * e_old
            eta = max(eta, prev) if prev > 0.1 else eta
            tol = max(ctx.abstol, rt * float(ctx.norm(u_new)[0])) if rt > 0 else ctx.abstol
            floor = 0.5 * tol / (f2 ** 0.5 if f2 > 0 else 1.0)
            return xp.asarray([min(max(eta, floor), emax)], dtype=ctx.dtype)
        # Eisenstat-Walker choice 2, safeguarded; never solve far below the nonlinear tolerance:
        # eta = min(max(0.9 r^2, [0.9 eta_old^2 if > 0.1], 0.5 tol / ||F||), eta_max)
        eta = 0.9 * fn2_new / xp.where(state.fn2 > 0, state.fn2, 1.0)
        prev = 0.9 * state.eta * state.eta
        eta = xp.maximum(eta, xp.where(prev > 0.1, prev, 0.0))
        tol = ctx.abstol if rt == 0 else xp.maximum(rt * ctx.norm(u_new), ctx.abstol)
        floor = (0.5 * tol) / xp.sqrt(xp.where(fn2_new > 0, fn2_new, 1.0))
        return xp.clip(xp.maximum(eta, floor), max=emax)

    def _direction(self, prob, state, ctx, newton):
        xp, B = ctx.xp, ctx.batch
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
        host = ctx.host_arrays and B == 1
        if host and not bool(newton[0]):  # backtracking along the current direction: nothing to solve
            return state.d, False, 0, 0, aug
        # the Jacobian at u, applied by every Krylov step (finite differences: u's part of the step once)
        jvp_u = ctx.products.linearize(u, fu, self.jvp_step)
        res = gmres_2d(xp, jvp_u, -fu, None, restart=restart, reltol=eta, abstol=ls.abstol,
                       maxiters=maxiters, active=None if host else newton, aug=aug)
        x = res.x
        if host:  # one system on NumPy: the checks on host floats
            resid = float(res.resid[0])
            unusable = (int(res.codes[0]) == _LSF and not resid * resid < float(state.fn2[0])) \
                or not bool(xp.all(xp.isfinite(x)))
            d = xp.zeros_like(x) if unusable else x
            if aug is not None and not unusable:
                dn = float(xp.vecdot(d[0, :], d[0, :])) ** 0.5
                if dn > 0:  # push the unit direction into the recycled set, in place (newest first)
                    aug = backend.set_at(xp, aug, (slice(None), slice(1, None), slice(None)), aug[:, :-1, :])
                    aug = backend.set_at(xp, aug, (slice(None), 0, slice(None)), d / dn)
            return d, unusable, res.nmatvec, res.niter, aug
        unusable = ((res.codes == _LSF) & ~(res.resid * res.resid < state.fn2)) | ~xp.all(xp.isfinite(x), axis=1)
        d = xp.where(xp.reshape(unusable, (B, 1)), 0.0, x)
        if aug is not None:
            dn = xp.sqrt(xp.sum(d * d, axis=1))
            push = newton & (dn > 0)
            unit = d / xp.reshape(xp.where(dn > 0, dn, 1.0), (B, 1))
            # the elements that push shift their directions by one slot (newest first), in place
            tail = xp.where(xp.reshape(push, (B, 1, 1)), aug[:, :-1, :], aug[:, 1:, :])
            head = xp.where(xp.reshape(push, (B, 1)), unit, aug[:, 0, :])
            aug = backend.set_at(xp, aug, (slice(None), slice(1, None), slice(None)), tail)
            aug = backend.set_at(xp, aug, (slice(None), 0, slice(None)), head)
        return d, unusable, res.nmatvec, res.niter, aug
