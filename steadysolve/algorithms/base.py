"""The algorithm contract and the solve context every algorithm receives.

An algorithm is a frozen (hashable) dataclass of options with two methods::

    init(prob, u0, ctx) -> State
    step(prob, state, ctx) -> State

``State`` is a ``typing.NamedTuple`` holding at least ``u``, ``fu`` (the residual
at ``u``; for ``DynamicSS`` the vector field) and the counters ``nf``, ``njvp``,
``nvjp`` (0-d integer arrays). Inside a solve every array is 2-D, ``(batch, n)``:

* leaves with ``ndim >= 1`` are per batch element, batch axis first (the driver
  freezes converged elements by ``where`` over that axis);
* 0-d leaves are global (counters, ring-buffer positions);
* an optional ``flag`` leaf of shape ``(batch,)`` (int32) lets a step report a
  per-element failure (a ``ReturnCode`` code, 0 for none), e.g. a failed linear solve.

``step`` may not branch in Python on array values, mutate arrays, use boolean
indexing or pull Python scalars out of arrays: choices use ``xp.where``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

__all__ = ["Algorithm", "Context", "check_positive", "check_int", "residual_scale"]


class Algorithm:
    """Base class of every nonlinear algorithm (subclasses are frozen dataclasses)."""

    #: registered name (set by :func:`steadysolve.registry.register`)
    name: ClassVar[str] = ""
    #: iterations without a new best residual before ``Stalled`` (None: never)
    stall_patience: ClassVar[Optional[int]] = 50
    #: eager batched solves: keep the state of converged elements with ``where`` (needed when
    #: the state holds per-element statistics, like DynamicSS's time); otherwise converged
    #: elements ride along with the batch and only their reported iterate is frozen
    freeze_converged: ClassVar[bool] = False

    def init(self, prob, u0, ctx: "Context"):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, prob, state, ctx: "Context"):  # pragma: no cover - interface
        raise NotImplementedError

    def extra_stats(self, state) -> dict:
        """Algorithm-specific counters for ``Solution.stats`` (arrays or ints)."""
        return {}


@dataclass
class Context:
    """What an algorithm needs from a solve, in the solver's 2-D ``(batch, n)`` layout."""

    xp: Any
    dtype: Any
    device: Any
    batch: int
    n: int
    F: Callable  # residual, (B, n) -> (B, n)
    G: Optional[Callable]  # fixed-point map for FixedPointProblem, else None
    jvp: Callable  # jvp(u, v, fu) -> J_F(u) v ; finite differences when the problem has none
    jvp_is_fd: bool  # True when jvp costs one evaluation of F
    vjp: Optional[Callable]  # vjp(u, w) -> w J_F(u), or None
    jac: Optional[Callable]  # jac(u) -> (B, n, n) dense Jacobian of F, or None
    vector_field: Callable  # vector_field(u, t) -> du/dt, for DynamicSS
    norm: Callable  # (B, n) -> (B,)
    abstol: float
    reltol: float
    fu0: Any  # F(u0), evaluated once by solve() to validate f
    p: Any = None
    kind: str = "nonlinear"
    traced: bool = False  # the JAX lax.while_loop driver runs this solve


    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype, device=self.device)

    def counter(self, value: int = 0):
        """A work counter: a Python int in eager solves (incrementing it costs no device
        operation), a 0-d int32 array under the JAX driver (int32 so that JAX without x64
        agrees with the others). Algorithms treat both alike (``+``, comparisons, ``where``)."""
        if not self.traced:
            return int(value)
        return self.xp.asarray(value, dtype=self.xp.int32, device=self.device)

    def batched(self, x):
        """Reshape a ``(batch,)`` array so that it broadcasts against ``(batch, n)``."""
        return self.xp.reshape(x, (self.batch, 1))


def check_positive(owner: str, name: str, value, *, allow_zero: bool = False, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    if value != value or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")


def check_int(owner: str, name: str, value, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")


def residual_scale(ctx: Context, u0, fu0, alpha):
    """Per-element scale ``a`` of the residual step ``u <- u + a F(u)``, shape ``(B, 1)``, or None.

    For a ``FixedPointProblem`` ``F(u) = g(u) - u`` and the natural scale is 1 (None:
    iterate ``g`` itself). For the other problems, unless the user fixed ``alpha``,
    it is SciPy's ``anderson`` choice ``0.5 * max(||u0||, 1) / ||F(u0)||`` (2-norms).
    """
    xp = ctx.xp
    if alpha is not None:
        return xp.full((ctx.batch, 1), float(alpha), dtype=ctx.dtype, device=ctx.device)
    if ctx.kind == "fixed_point":
        return None
    unorm = xp.sqrt(xp.sum(u0 * u0, axis=1))
    fnorm = xp.sqrt(xp.sum(fu0 * fu0, axis=1))
    one = xp.ones_like(unorm)
    safe = xp.where(fnorm > 0, fnorm, one)
    a = xp.where(fnorm > 0, 0.5 * xp.maximum(unorm, one) / safe, one)
    return ctx.batched(a)
