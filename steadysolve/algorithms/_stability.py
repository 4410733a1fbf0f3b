"""The steady state a flow reaches is a *stable* equilibrium: the guard of the methods that take long steps.

A root finder, and a time stepper whose steps have grown long (pseudo-transient continuation,
an L-stable Rosenbrock method: both become Newton's method as the step grows), can converge to an
equilibrium of ``du/dt = f(u)`` that the flow never reaches: one where the Jacobian has an
eigenvalue with positive real part (OREGO's, the Brusselator's past its Hopf point). For a
``SteadyStateProblem`` that is not the answer, so these methods check, with the dense Jacobian
they already hold, every element that has come near the tolerance, and stop an unstable one
with ``Diverged`` (the flow diverges from that point) before the verdict could call it a root.

Zero eigenvalues are allowed: a conservation law (a closed reaction network) makes the Jacobian
singular everywhere, and its steady states are stable within their invariant manifold. Rounding
puts those eigenvalues at ``~eps ||J||`` (``~sqrt(eps ||J||)`` for a Jordan block), so only real
parts above ``sqrt(eps) ||J||_inf`` count.
"""

from __future__ import annotations

from .. import _backend as backend
from ..retcodes import ReturnCode

__all__ = ["unstable_equilibrium", "NEAR", "DIVERGED"]

#: an element is checked once its residual is within this factor of the tolerance
NEAR = 1e3
DIVERGED = ReturnCode.Diverged.code


def unstable_equilibrium(ctx, u, fu, J):
    """``(B,)`` bool: elements of a ``SteadyStateProblem`` near the tolerance at ``u`` (``fu`` the field
    there) whose Jacobian ``J`` ``(B, n, n)`` has an eigenvalue with positive real part; None for
    other problems. The eigenvalues are computed only when some element is near (a host branch
    eagerly, ``lax.cond`` under JAX tracing: ``backend.when_any``)."""
    if ctx.kind != "steady_state":
        return None
    xp, B, n = ctx.xp, ctx.batch, ctx.n
    terms = ctx.norm(xp.reshape(J @ xp.reshape(u, (B, n, 1)), (B, n)))
    scale = xp.maximum(ctx.norm(u), terms)
    near = ctx.norm(fu) <= NEAR * xp.maximum(ctx.reltol * scale, xp.full_like(scale, ctx.abstol))
    width = xp.max(xp.sum(xp.abs(J), axis=2), axis=1)  # ||J||_inf bounds every |eigenvalue|
    thr = float(xp.finfo(J.dtype).eps) ** 0.5 * width

    def check(J):
        return backend.max_real_eigenvalue(xp, J) > thr

    (bad,), _ = backend.when_any(xp, near, lambda J: (check(J),), lambda J: (xp.zeros((B,), dtype=xp.bool),), J)
    return near & bad
