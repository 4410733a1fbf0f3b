"""Per-element arithmetic on Python floats: the namespace of ONE system's scalars.

The generic arithmetic that both the batched path and the one-system engine need (the adaptive
attempt and its step-size controller, :mod:`steadysolve.ode.adaptive`) is written against a small
namespace; :class:`~steadysolve.ode._elements.ArrayElements` spells it on ``(B,)`` arrays, this
module on Python floats and bools for a ``(1, n)`` NumPy row. ``minimum`` / ``maximum`` propagate
NaN as the array functions do (Python's ``min`` / ``max`` do not).
"""

from __future__ import annotations

import math

from .. import _backend as backend

__all__ = ["FLOATS"]

_EPS = 2.0 ** -52  # the clock is a Python float


def _maximum(a, b):
    return a if (a >= b or a != a) else b


def _minimum(a, b):
    return a if (a <= b or a != a) else b


class _Floats:
    xp = backend.namespace(("u", backend.host_numpy().zeros(1)))  # the rows: NumPy
    isfinite = staticmethod(math.isfinite)
    sqrt = staticmethod(math.sqrt)
    abs = staticmethod(abs)
    maximum = staticmethod(_maximum)
    minimum = staticmethod(_minimum)

    @staticmethod
    def where(c, a, b):
        return a if c else b

    pick = where

    @staticmethod
    def clip(x, lo: float, hi: float):
        return _minimum(_maximum(x, lo), hi)

    @staticmethod
    def full(like, value: float):
        return value

    @staticmethod
    def logical_not(x):
        return not x

    @staticmethod
    def rows(x, dtype=None):
        return x

    @staticmethod
    def row_sumsq(x):
        r = x[0]
        return float(r.dot(r))

    @staticmethod
    def row_finite(x):
        return math.isfinite(x.max())

    @staticmethod
    def eps(t) -> float:
        return _EPS


FLOATS = _Floats()
