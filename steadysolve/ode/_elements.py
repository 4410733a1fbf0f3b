"""The per-element arithmetic of an adaptive attempt, as a small namespace.

An attempt mixes two kinds of quantities: the state's rows ``(B, n)`` (``u``, the stages, the local
error), always arrays of the solve's library, and per-element scalars (time, step size, scaled
error, the accept/reject decision). The attempt and the step-size controller are written once
against a namespace ``el`` for the second kind, which also says how a per-element scalar meets a
row (``rows``, ``pick``) and how a row is reduced to one (``row_sumsq``, ``row_finite``):

* :class:`ArrayElements` -- ``(B,)`` arrays of the solve's library, every decision a ``where``:
  straight-line code for every library and under ``jax.jit``;
* the small-system engine's namespace of Python floats for ONE NumPy system
  (``steadysolve._small``), where the host holds the scalars anyway.

``el.xp`` is the namespace of the rows. The methods take Python floats for constants.
"""

from __future__ import annotations

from .. import _backend as backend
from .._backend import fused, torch_ops

__all__ = ["ArrayElements", "elements"]


class ArrayElements:
    """Per-element scalars as ``(B,)`` arrays of ``xp`` (see the module notes)."""

    __slots__ = ("xp", "where", "minimum", "maximum", "isfinite", "abs", "sqrt")

    def __init__(self, xp):
        self.xp = xp
        lib = torch_ops if backend.is_torch(xp) else xp  # PyTorch: Python scalars without the wrapper
        self.where, self.minimum, self.maximum = lib.where, lib.minimum, lib.maximum
        self.isfinite, self.abs, self.sqrt = xp.isfinite, xp.abs, xp.sqrt

    def clip(self, x, lo: float, hi: float):
        return self.minimum(self.maximum(x, lo), hi)

    def full(self, like, value: float):
        return self.xp.full_like(like, value)

    def logical_not(self, x):
        return self.xp.logical_not(x)

    def rows(self, x, dtype=None):
        """``x`` ``(B,)`` as a ``(B, 1)`` column that broadcasts against the rows (in ``dtype`` if given)."""
        x = self.xp.reshape(x, (x.shape[0], 1))
        return x if dtype is None else backend.cast(self.xp, x, dtype)

    def pick(self, cond, a, b):
        """Rows of ``a`` where ``cond`` ``(B,)`` holds, of ``b`` elsewhere."""
        return self.xp.where(self.xp.reshape(cond, (cond.shape[0], 1)), a, b)

    def row_sumsq(self, x):
        """``sum(x * x)`` per row."""
        return fused.row_sumsq(self.xp, x)

    def row_finite(self, x):
        """Whether each row of the non-negative ``x`` is finite (NaN and Inf propagate through ``max``)."""
        return self.xp.isfinite(self.xp.max(x, axis=1))

    def eps(self, t) -> float:
        """The rounding unit of the clock ``t``."""
        return float(self.xp.finfo(t.dtype).eps)


_CACHE: dict = {}


def elements(xp) -> ArrayElements:
    """The :class:`ArrayElements` of ``xp`` (one per namespace)."""
    el = _CACHE.get(id(xp))
    if el is None or el.xp is not xp:
        el = _CACHE[id(xp)] = ArrayElements(xp)
    return el
