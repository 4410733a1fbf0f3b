"""Newton-Raphson with a dense Jacobian and a dense solve (small systems)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import backend
from ..registry import register
from ..checks import check_int
from .newton_krylov import NewtonBase

__all__ = ["NewtonRaphson"]


@register("newton")
@dataclass(frozen=True)
class NewtonRaphson(NewtonBase):
    """Newton's method with the dense Jacobian: ``J(u) d = -F(u)``, ``u <- u + lam d``.

    The Jacobian comes from the problem's ``jac`` when given, otherwise it is
    assembled column by column from ``n`` JVPs (finite differences unless the
    problem has a ``jvp``; each finite-difference column costs one ``F`` and is
    counted in ``njvp``). The solve is a batched ``linalg.solve`` on
    ``(batch, n, n)`` with a tiny diagonal shift (``eps * max|J|``) so that an
    exactly singular Jacobian gives a huge step (which the line search rejects)
    instead of an exception; a non-finite Jacobian or step stops the element
    with ``LinearSolveFailed``. Same Armijo line search as :class:`NewtonKrylov`.

    The Jacobian is only built in the Newton phase: backtracking iterations skip
    it (a host-side branch eagerly, ``lax.cond`` under JAX tracing).

    Parameters
    ----------
    linesearch : ``"armijo"`` or ``None``.
    max_backtracks : rejected trials along one direction before the step is forced.
    max_size : largest ``n`` (unknowns per element) accepted, default 1000: the
        Jacobian takes ``n^2`` memory and ``O(n^3)`` per step. Larger systems raise
        ``ValueError`` before iterating; use :class:`NewtonKrylov` (matrix-free).

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

    linesearch: Optional[str] = "armijo"
    max_backtracks: int = 10
    max_size: int = 1000

    def __post_init__(self):
        check_int("NewtonRaphson", "max_size", self.max_size, 1)
        self._check_linesearch("NewtonRaphson")

    def init(self, prob, u0, ctx):
        if ctx.n > self.max_size:
            raise ValueError(
                f"NewtonRaphson: the system has n={ctx.n} unknowns per element, above max_size={self.max_size}; "
                "a dense Jacobian needs n*n memory and O(n^3) work per step. Use NewtonKrylov (matrix-free "
                "Newton-Krylov, ss.NewtonKrylov()) or raise NewtonRaphson(max_size=...)")
        return super().init(prob, u0, ctx)

    def _dense_direction(self, ctx, u, fu):
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        J, nj = ctx.jacobian(u, fu)
        finite_j = xp.all(xp.isfinite(xp.reshape(J, (B, n * n))), axis=1)
        J = xp.where(xp.reshape(finite_j, (B, 1, 1)), J, xp.zeros_like(J))
        # Regularise each diagonal entry relative to its own row and column (a global eps*max|J|
        # would swamp rows far smaller than the largest); an all-zero row and column falls back to
        # the global scale, so a zero Jacobian still gives a finite (huge) step.
        absJ = xp.abs(J)
        local = xp.maximum(xp.max(absJ, axis=2), xp.max(absJ, axis=1))  # (B, n)
        scale = xp.max(local, axis=1, keepdims=True)
        eps, tiny = float(xp.finfo(ctx.dtype).eps), float(xp.finfo(ctx.dtype).smallest_normal)
        shift = eps * xp.where(local > 0, local, scale) + tiny
        eye = xp.eye(n, dtype=ctx.dtype, device=ctx.device)
        A = J + xp.reshape(shift, (B, n, 1)) * xp.reshape(eye, (1, n, n))
        d = xp.reshape(backend.solve_small(xp, A, xp.reshape(-fu, (B, n, 1))), (B, n))
        ok = finite_j & xp.all(xp.isfinite(d), axis=1)
        d = xp.where(xp.reshape(ok, (B, 1)), d, xp.zeros_like(d))
        return d, ~ok, nj

    def _direction(self, prob, state, ctx, newton):
        xp = ctx.xp
        u, fu = state.u, state.fu
        if backend.is_jax(xp) and backend.is_traced(u):
            import jax
            import jax.numpy as jnp

            def yes(args):
                d, bad, nj = self._dense_direction(ctx, *args)
                return d, bad, jnp.asarray(nj, dtype=jnp.int32)

            def no(args):
                return (xp.zeros_like(u), xp.zeros(newton.shape, dtype=xp.bool),
                        jnp.asarray(0, dtype=jnp.int32))

            d, bad, nj = jax.lax.cond(jnp.any(newton), yes, no, (u, fu))
            return d, bad, nj, xp.astype(xp.any(newton), xp.int32), None
        if not backend.host_bool(xp.any(newton)):
            return xp.zeros_like(u), xp.zeros(newton.shape, dtype=xp.bool, device=ctx.device), 0, 0, None
        d, bad, nj = self._dense_direction(ctx, u, fu)
        return d, bad, nj, 1, None

    def extra_stats(self, state) -> dict:
        return {"nlinsolve": state.nlinsolve, "njac": state.nlinear, "nbacktrack": state.nbacktrack}
