"""Newton-Raphson with a dense Jacobian and a dense solve (small systems)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import _backend as backend
from ..registry import register
from .._checks import check_int
from ..linear._sparse_steps import sparse_steps
from .dense import finite_jacobian, refuse_large, regularised
from .newton_base import NewtonBase

__all__ = ["NewtonRaphson"]


@register("newton")
@dataclass(frozen=True)
class NewtonRaphson(NewtonBase):
    """Newton's method with the dense Jacobian: ``J(u) d = -F(u)``, ``u <- u + lam d``.

    The Jacobian comes from the problem's ``jac`` when given, otherwise it is
    assembled column by column from ``n`` JVPs (finite differences unless the
    problem has a ``jvp``; each finite-difference column costs one ``F``, counted in
    ``nf`` and ``njvp``). The solve is a batched ``linalg.solve`` on
    ``(batch, n, n)`` with a tiny diagonal shift (``eps`` times the largest entry of
    each row and column, ``steadysolve.algorithms.dense.regularised``) so that an
    exactly singular Jacobian gives a huge step (which the line search rejects)
    instead of an exception; a non-finite Jacobian or step stops the element
    with ``LinearSolveFailed``. Same line search as ``NewtonKrylov`` (Armijo backtracking
    with a watchdog, see ``steadysolve.algorithms.newton_base``).

    The Jacobian is only built in the Newton phase: backtracking iterations skip
    it (``backend.when_any``: a host branch eagerly, ``lax.cond`` under JAX tracing).

    **Sparse Jacobians.** When the problem gives ``sparsity=`` or its ``jac`` returns a sparse
    matrix, the Jacobian stays sparse: its values come from ``jac`` or from one product per colour
    of the pattern's column colouring, and each Newton direction is a SuperLU solve
    (``scipy.sparse.linalg.splu``; ``MMD_AT_PLUS_A`` ordering for a structurally symmetric pattern),
    one factorisation per batch element on one shared colouring (``stats.nfact``). ``max_size`` then
    does not apply. An exactly singular sparse Jacobian stops the element with ``LinearSolveFailed``.
    The factorisation is host work: NumPy, array_api_strict, PyTorch and eager JAX arrays go through
    host copies (no copy for NumPy and CPU tensors); under ``jax.jit`` the dense Jacobian is used up to
    ``max_size`` and a larger sparse system is refused, naming ``NewtonKrylov`` with a preconditioner.

    Parameters
    ----------
    linesearch
        ``"watchdog"`` (default), ``"armijo"`` (monotone) or ``None`` (full steps).
    max_backtracks
        Rejected trials along one direction before the step is forced.
    max_size
        Largest ``n`` (unknowns per element) accepted for a dense Jacobian, default 1000: it
        takes ``n^2`` memory and ``O(n^3)`` per step. Larger dense systems raise ``ValueError``
        before iterating; give ``sparsity=`` or use ``NewtonKrylov`` (matrix-free).

    Raises
    ------
    ValueError
        An invalid option (an unknown ``linesearch``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> f = lambda u, p: np.stack([u[0] ** 2 + u[1] ** 2 - 4.0, u[0] - u[1]])
    >>> jac = lambda u, p: np.array([[2 * u[0], 2 * u[1]], [1.0, -1.0]])
    >>> sol = ss.solve(ss.NonlinearProblem(f, np.array([1.0, 0.5]), jac=jac), ss.NewtonRaphson())
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([1.414214, 1.414214]))
    """

    linesearch: Optional[str] = "watchdog"
    max_backtracks: int = 10
    max_size: int = 1000

    def __post_init__(self):
        check_int("NewtonRaphson", "max_size", self.max_size, 1)
        self._check_linesearch("NewtonRaphson")

    def cost(self, n: int) -> int:  # one evaluation and a dense Jacobian of n JVPs (backtracks are iterations)
        return 1 + n

    def init(self, prob, u0, ctx):
        if sparse_steps(ctx, u0, "NewtonRaphson", self.max_size) is None:
            refuse_large("NewtonRaphson", ctx.n, self.max_size)
        return super().init(prob, u0, ctx)

    def _dense_direction(self, ctx, u, fu):
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        J, nj = ctx.jacobian(u, fu)
        J, finite_j = finite_jacobian(xp, J)
        A = regularised(xp, J)
        d = xp.reshape(backend.solve_small(xp, A, xp.reshape(-fu, (B, n, 1))), (B, n))
        ok = finite_j & xp.all(xp.isfinite(d), axis=1)
        d = xp.where(xp.reshape(ok, (B, 1)), d, xp.zeros_like(d))
        return d, ~ok, nj, 1

    def _direction(self, prob, state, ctx, newton):
        xp = ctx.xp
        u, fu = state.u, state.fu
        steps = sparse_steps(ctx, u, "NewtonRaphson", self.max_size)
        if steps is None:
            def build(args):
                return self._dense_direction(ctx, *args)
        else:  # the sparse Jacobian of every element, factorised where a Newton direction is needed
            def build(args):
                values, nj = steps.jacobian(*args)
                d, bad, nfact = steps.newton(values, args[1], need=newton)
                return d, bad, nj, nfact
        (d, bad, nj, nfact), ran = backend.when_any(
            xp, newton, build,
            lambda args: (xp.zeros_like(u), xp.zeros(newton.shape, dtype=xp.bool, device=ctx.device), 0, 0), (u, fu))
        return d, bad, nj, ran, None, nfact

    def extra_stats(self, state) -> dict:
        return {"nlinsolve": state.nlinsolve, "njac": state.nlinear, "nfact": getattr(state, "nfact", state.nlinear),  # (the twin: one LU a Jacobian)
                "nbacktrack": state.nbacktrack}
