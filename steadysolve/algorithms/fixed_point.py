"""Damped fixed-point (Picard) iteration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..registry import register
from .._checks import check_positive
from .base import Algorithm, residual_scale


class FixedPointState(NamedTuple):
    u: Any
    fu: Any
    alpha: Any  # (B, 1) residual scale, or None for a FixedPointProblem
    g: Any  # undamped FixedPointProblem: g(u), the next iterate as the map gave it; else None
    nf: Any
    njvp: Any
    nvjp: Any


@register("fixed_point")
@dataclass(frozen=True)
class FixedPointIteration(Algorithm):
    """``u <- u + damping * alpha * F(u)``.

    On a ``FixedPointProblem`` (``F = g(u) - u``, ``alpha = 1``) this is the damped
    iteration ``u <- (1 - damping) u + damping g(u)``; with ``damping=1`` it is
    plain ``u <- g(u)``. On the other problems ``alpha`` defaults to SciPy's
    ``anderson`` choice ``0.5 max(||u0||, 1) / ||F(u0)||`` (per batch element);
    it assumes ``F`` points towards the root (``F ~ -(u - u*)``).

    Raises
    ------
    ValueError
        An invalid option (``damping <= 0``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.FixedPointProblem(lambda u, p: 0.5 * u + 1.0, np.zeros(1))
    >>> sol = ss.solve(prob, ss.FixedPointIteration(), abstol=1e-10)
    >>> sol.retcode.name, np.round(sol.u, 8)
    ('Success', array([2.]))
    """

    sign_sensitive = True

    damping: float = 1.0
    alpha: Optional[float] = None

    def __post_init__(self):
        check_positive("FixedPointIteration", "damping", self.damping)
        check_positive("FixedPointIteration", "alpha", self.alpha, allow_none=True)

    def _plain(self, ctx) -> bool:
        """``u <- g(u)`` itself: an undamped FixedPointProblem (the next iterate is ``g``'s output,
        not ``u + (g(u) - u)``, which costs one operation more and rounds)."""
        return ctx.kind == "fixed_point" and self.damping == 1.0 and ctx.G is not None

    def init(self, prob, u0, ctx):
        alpha = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        g = u0 + ctx.fu0 if self._plain(ctx) else None
        return FixedPointState(u0, ctx.fu0, alpha, g, ctx.counter(1), ctx.counter(0), ctx.counter(0))

    def host_step_scale(self, state):
        alpha = 1.0 if state.alpha is None else float(state.alpha[0, 0])
        return self.damping * abs(alpha)

    def step(self, prob, state, ctx):
        if state.g is not None:
            u = state.g
        elif state.alpha is None:
            u = state.u + (state.fu if self.damping == 1.0 else self.damping * state.fu)
        else:
            u = state.u + (self.damping * state.alpha) * state.fu
        if state.g is not None:
            g = ctx.G(u)
            fu = g - u
        else:
            g, fu = None, ctx.F(u)
        return FixedPointState(u, fu, state.alpha, g, state.nf + 1, state.njvp, state.nvjp)
