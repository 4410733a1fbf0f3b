"""Pseudo-transient continuation: implicit Euler steps on ``du/dt = F(u)`` whose step grows as ``F`` falls.

Each iteration solves ``(I / dt - J) du = F(u)`` with ``J`` the Jacobian at ``u`` and moves to
``u + du``: one linearly implicit Euler step of pseudo-time ``dt``. Kelley & Keyes' *switched
evolution relaxation* (SER) sets the next step from the residual's fall,
``dt <- dt * ||F_old|| / ||F_new||`` (2-norms): while the flow is in a transient the steps stay
short and follow it (implicit Euler is L-stable: stiff modes are damped, not resolved), and once
the residual falls they grow until the iteration is Newton's method (``dt -> inf``). Kelley &
Keyes, "Convergence analysis of pseudo-transient continuation", SIAM J. Numer. Anal. 35 (1998)
508-523.

Linear invariants of the flow (``c . F(u) = 0`` for all ``u``, a conservation law) are kept
exactly with the exact Jacobian: ``c^T J = 0``, so ``c . du = dt c . F(u) = 0``. For a
``SteadyStateProblem`` the dense variant refuses an unstable equilibrium
(:mod:`~steadysolve.algorithms._stability`).

Per element, the step ``dt`` and the decisions are ``(B,)`` arrays and ``where``: batched, every
library, ``jax.jit``. A trial that is not finite (or a linear solve that fails) is rejected: ``u``
stays and ``dt`` shrinks tenfold; ``MAX_REJECTS`` in a row stop the element (``LinearSolveFailed``
when the linear system could not be solved, else ``NonFinite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union

from .. import _backend as backend
from .._backend import fused
from .._checks import check_int, check_positive
from ..linear.gmres import GMRES, gmres_2d
from ..ode._wsolve import SparseLU, SparseRows
from ..registry import register
from ..retcodes import ReturnCode
from ._dynamic_stiff import sparse_probe, unstable_sparse
from ._stability import DIVERGED, unstable_equilibrium
from .base import Algorithm
from .dense import finite_jacobian, refuse_large

__all__ = ["PseudoTransient", "PTCState"]

_LSF = ReturnCode.LinearSolveFailed.code
_SUCCESS = ReturnCode.Success.code
_NONFINITE = ReturnCode.NonFinite.code
#: consecutive rejected trials (each shrinking dt tenfold) that stop an element
MAX_REJECTS = 20
#: the step may grow at most this factor per iteration, and shrink at most by its inverse
MAX_RATIO = 1e3
#: systems up to this size use the dense Jacobian by default (``linsolve=None``)
DENSE_N = 100


def _krylov_steps(ls: GMRES, n: int) -> int:
    """Krylov steps of one GMRES cycle on ``n`` unknowns (``maxiters`` caps it when set)."""
    return ls.maxiters if ls.maxiters is not None else min(ls.restart, n)


UNSTABLE_HINT = ("PseudoTransient: Diverged means the iterate ran away, or (a SteadyStateProblem) the long steps "
                 "converged to an unstable equilibrium, which the flow from u0 does not reach (the dense "
                 "Jacobian there has an eigenvalue with positive real part); DynamicSS(ss.Rodas5P()) follows "
                 "the flow itself")


class PTCState(NamedTuple):
    u: Any  # (B, n)
    fu: Any  # (B, n) F(u)
    dt: Any  # (B,) the next pseudo-time step
    fnorm: Any  # (B,) ||F(u)||_2
    nrej: Any  # (B,) int32: trials rejected in a row
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    njac: Any  # dense Jacobians built
    nlinsolve: Any  # linear solves
    nkrylov: Any  # Krylov steps (matrix-free variant)
    nreject: Any  # rejected trials


@register("pseudo_transient")
@dataclass(frozen=True)
class PseudoTransient(Algorithm):
    """Pseudo-transient continuation (Kelley & Keyes' switched evolution relaxation).

    Solves ``(I / dt - J(u)) du = F(u)``, ``u <- u + du``, ``dt <- growth * dt * ||F_old|| / ||F_new||``:
    implicit Euler on ``du/dt = F(u)`` (a ``SteadyStateProblem``'s ``f``; a root problem's residual,
    which must point towards the root as for ``DynamicSS``) with a step that grows into Newton's
    method as the residual falls. It follows the flow through stiff transients that an explicit
    integrator crawls through, in far fewer steps than an accurate stiff integrator.

    Parameters
    ----------
    linsolve
        ``"dense"`` (the Jacobian from the problem's ``jac``, automatic differentiation or ``n``
        finite differences, and a batched dense solve), ``"sparse"`` (the problem's sparse
        Jacobian, from ``sparsity=`` or a sparse ``jac``, factorised by SuperLU on NumPy; other
        libraries make it dense), a ``GMRES`` (matrix-free: Jacobian-vector products only; its
        ``restart``, ``abstol`` and ``maxiters`` are used, the relative tolerance is ``forcing``),
        or ``None`` (the default: sparse on NumPy when the problem has a sparse Jacobian, else
        dense up to 100 unknowns, else ``GMRES()``).
    dt0
        First pseudo-time step; ``None``: a tenth of the start's time scale, ``0.1 ||u0|| / ||F(u0)||``
        (2-norms; ``||u0||`` taken as 1 when ``u0 = 0``; ``dt0 = 1`` when ``F(u0) = 0``); 1 for a
        ``FixedPointProblem``, whose ``g(u) - u`` relaxes on a time scale of 1 where ``g`` contracts.
    growth
        Extra factor on the SER update (``1``: Kelley & Keyes' rule; above 1 the step also grows
        while the residual stagnates, as PETSc's ``-ts_pseudo_increment``).
    dtmax
        Cap on the step.
    forcing
        Relative tolerance of the matrix-free linear solves.
    max_size
        Largest ``n`` accepted with ``linsolve="dense"`` (the Jacobian takes ``n^2`` memory).

    Notes
    -----
    ``stats`` add ``njac`` (Jacobians), ``nlinsolve``, ``nkrylov`` (Krylov steps) and ``nreject``
    (rejected trials). One iteration costs one evaluation of ``F`` plus the Jacobian (``n`` JVPs by
    finite differences or AD, counted in ``njvp``; one per colour of the pattern for a sparse one;
    none with the problem's ``jac``) or the Krylov steps (one JVP each).

    Raises
    ------
    ValueError, TypeError
        An invalid option, at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> D = np.array([1.0, 1e4])                       # stiff: rates over four decades
    >>> prob = ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) - 0.1 * u ** 3, np.zeros(2), D)
    >>> sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-12)
    >>> sol.retcode.name, sol.stats.niter < 40
    ('Success', True)
    """

    linsolve: Union[None, str, GMRES] = None
    dt0: Optional[float] = None
    growth: float = 1.0
    dtmax: float = 1e12
    forcing: float = 1e-2
    max_size: int = 1000

    stall_patience = 50
    sign_sensitive = True

    def __post_init__(self):
        own = "PseudoTransient"
        if not (self.linsolve is None or self.linsolve in ("dense", "sparse") or isinstance(self.linsolve, GMRES)):
            raise TypeError(f"{own}: linsolve must be None, 'dense', 'sparse' or a GMRES instance, got {self.linsolve!r}")
        check_positive(own, "dt0", self.dt0, allow_none=True)
        check_positive(own, "growth", self.growth)
        if self.growth < 1:
            raise ValueError(f"{own}: growth must be >= 1, got {self.growth}")
        check_positive(own, "dtmax", self.dtmax, allow_inf=True)
        check_positive(own, "forcing", self.forcing)
        if not self.forcing < 1:
            raise ValueError(f"{own}: forcing must be < 1, got {self.forcing}")
        check_int(own, "max_size", self.max_size, 1)

    def dense(self, n: int) -> bool:
        """Whether a system of ``n`` unknowns per element takes the dense Jacobian (without a sparse one)."""
        return self.linsolve == "dense" or (self.linsolve is None and n <= DENSE_N)

    def _sparse(self, ctx, u):
        """The problem's :class:`~steadysolve.sparse.SparseJacobians` when the linear solves are sparse, else None."""
        if self.linsolve not in (None, "sparse"):
            return None
        sj = ctx.sparse_jacobians(u)
        if self.linsolve == "sparse":
            if sj is None:
                raise ValueError("PseudoTransient(linsolve='sparse') needs a sparse Jacobian: give the problem "
                                 "sparsity= or a jac returning a sparse matrix")
            return sj
        return sj if backend.is_numpy(ctx.xp) else None

    def cost(self, n: int) -> int:  # one evaluation, and a dense Jacobian or one GMRES cycle
        return 1 + (n if self.dense(n) else _krylov_steps(self.linsolve if isinstance(self.linsolve, GMRES) else GMRES(), n))

    def init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        # the first ask calls a jac to see whether it is sparse: counted in njac
        probes = sparse_probe(ctx, prob, u0, ctx.fu0)[1] if self.linsolve in (None, "sparse") else 0
        sj = self._sparse(ctx, u0)
        sparse = sj is not None
        if sparse and not sj.from_jac:
            sj.groups  # the colouring plan's arrays, built outside any traced branch
        if (self.dense(ctx.n) and not sparse) or (sparse and not backend.is_numpy(xp)):  # dense matrices
            refuse_large("PseudoTransient", ctx.n, self.max_size)
        fu = ctx.fu0
        fnorm = backend.l2(xp, fu)
        if self.dt0 is not None or ctx.kind == "fixed_point":  # g(u) - u relaxes on a time scale of 1
            dt = xp.full_like(fnorm, 1.0 if self.dt0 is None else float(self.dt0))
        else:
            unorm = backend.l2(xp, u0)
            unorm = xp.where(unorm > 0, unorm, 1.0)
            dt = xp.where(fnorm > 0, 0.1 * unorm / xp.where(fnorm > 0, fnorm, 1.0), 1.0)
        dt = xp.minimum(dt, self.dtmax)
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        c0 = ctx.counter(0)
        return PTCState(u=u0, fu=fu, dt=dt, fnorm=fnorm, nrej=zi, flag=zi, nf=ctx.counter(1), njvp=c0, nvjp=c0,
                        njac=ctx.counter(probes), nlinsolve=c0, nkrylov=c0, nreject=c0)

    def step(self, prob, state, ctx):
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        u, fu, dt = state.u, state.fu, state.dt
        sj = self._sparse(ctx, u)
        if sj is not None:
            du, solved, njvp, nkrylov, J = self._sparse_step(ctx, sj, u, fu, dt)
        elif self.dense(n):
            du, solved, njvp, nkrylov, J = self._dense_step(ctx, u, fu, dt)
        else:
            du, solved, njvp, nkrylov, J = self._krylov_step(ctx, u, fu, dt)
        trial = u + du
        ft = ctx.F(trial)
        ftn = backend.l2(xp, ft)
        ok = solved & xp.isfinite(ftn)
        ratio = state.fnorm / xp.where(ftn > 0, ftn, float(xp.finfo(ftn.dtype).smallest_normal))
        grown = dt * xp.clip(self.growth * ratio, min=1.0 / MAX_RATIO, max=MAX_RATIO)
        dt_new = xp.where(ok, xp.minimum(grown, self.dtmax), 0.1 * dt)
        nrej = xp.where(ok, 0, state.nrej + 1)
        stop = xp.where(solved, xp.full_like(state.flag, _NONFINITE), xp.full_like(state.flag, _LSF))
        flag = xp.where(nrej >= MAX_REJECTS, stop, state.flag)
        if J is not None:  # a SteadyStateProblem's long step onto an equilibrium the flow leaves
            bad = unstable_sparse(ctx, trial, ft, J) if sj is not None else unstable_equilibrium(ctx, trial, ft, J)
            if bad is not None:
                bad = bad & ok
                flag, ok = xp.where(bad, xp.full_like(flag, DIVERGED), flag), ok & ~bad
        ok2 = xp.reshape(ok, (B, 1))
        return PTCState(
            u=xp.where(ok2, trial, u), fu=xp.where(ok2, ft, fu), dt=dt_new, fnorm=xp.where(ok, ftn, state.fnorm),
            nrej=xp.astype(nrej, state.nrej.dtype), flag=flag, nf=state.nf + 1 + ctx.f_calls(njvp), njvp=state.njvp + njvp,
            nvjp=state.nvjp, njac=state.njac + (0 if J is None else 1), nlinsolve=state.nlinsolve + 1,
            nkrylov=state.nkrylov + nkrylov, nreject=state.nreject + xp.sum(xp.astype(~ok, xp.int32), dtype=xp.int32),
        )

    def _dense_step(self, ctx, u, fu, dt):
        """``(du, solved (B,), JVPs, 0, J)`` by a dense solve with ``I / dt - J``."""
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        J, nj = ctx.jacobian(u, fu)
        J, finite = finite_jacobian(xp, J)
        eye = xp.reshape(xp.eye(n, dtype=J.dtype, device=ctx.device), (1, n, n))
        A = eye / xp.reshape(backend.cast(xp, dt, J.dtype), (B, 1, 1)) - J
        du = xp.reshape(backend.solve_small(xp, A, xp.reshape(fu, (B, n, 1))), (B, n))
        solved = finite & xp.all(xp.isfinite(du), axis=1)
        return xp.where(xp.reshape(solved, (B, 1)), du, 0.0), solved, nj, 0, J

    def _sparse_step(self, ctx, sj, u, fu, dt):
        """``(du, solved (B,), JVPs, 0, J)`` by a sparse LU of ``I / dt - J`` (``J`` a :class:`SparseRows`)."""
        xp, B = ctx.xp, ctx.batch
        values, nj = sj.at(u, fu)
        J = SparseRows(values, sj.pattern)
        ws = SparseLU()
        du = ws.solve(xp, ws.factor(xp, J, xp.reshape(backend.cast(xp, dt, u.dtype), (B, 1))), fu)
        solved = xp.all(xp.isfinite(du), axis=1)
        return xp.where(xp.reshape(solved, (B, 1)), du, 0.0), solved, nj, 0, J

    def _krylov_step(self, ctx, u, fu, dt):
        """``(du, solved (B,), JVPs, Krylov steps, None)`` by GMRES on ``v -> v / dt - J v``."""
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        ls = self.linsolve if isinstance(self.linsolve, GMRES) else GMRES()
        restart = min(ls.restart, n)
        jvp_u = ctx.products.linearize(u, fu)
        inv_dt = xp.reshape(backend.cast(xp, 1.0 / dt, u.dtype), (B, 1))

        def matvec(v):
            return v * inv_dt - jvp_u(v)

        res = gmres_2d(xp, matvec, fu, None, restart=restart, reltol=self.forcing, abstol=ls.abstol,
                       maxiters=ls.maxiters if ls.maxiters is not None else restart)
        # a solve short of its tolerance is no implicit Euler step: rejected, the shorter step's system
        # (I / dt dominant) is better conditioned
        solved = (res.codes == _SUCCESS) & xp.all(xp.isfinite(res.x), axis=1)
        return xp.where(xp.reshape(solved, (B, 1)), res.x, 0.0), solved, res.nmatvec, res.niter, None

    def failure_hint(self, state, codes):
        if any(int(c) == DIVERGED for c in codes):
            return UNSTABLE_HINT
        return None

    def extra_stats(self, state) -> dict:
        return {"njac": state.njac, "nlinsolve": state.nlinsolve, "nkrylov": state.nkrylov, "nreject": state.nreject}
