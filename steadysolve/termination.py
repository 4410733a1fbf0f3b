"""Norms and the convergence test, per batch element.

Inside the solvers every array is 2-D, ``(batch, n)``; norms reduce over axis 1
and return one value per batch element.
"""

from __future__ import annotations

import difflib
from typing import Callable

__all__ = ["get_norm", "converged", "NORMS", "default_tolerance"]


def max_norm(xp, x):
    return xp.max(xp.abs(x), axis=1)


def l2_norm(xp, x):
    return xp.sqrt(xp.sum(x * x, axis=1))


def rms_norm(xp, x):
    return xp.sqrt(xp.mean(x * x, axis=1))


NORMS: dict[str, Callable] = {"max": max_norm, "inf": max_norm, "l2": l2_norm, "rms": rms_norm}


def get_norm(norm) -> Callable:
    """Resolve ``norm`` into ``f(xp, x2d) -> per-row norms``.

    ``norm`` is one of ``"max"`` (alias ``"inf"``), ``"l2"``, ``"rms"``, or a callable
    ``norm(x)`` that maps a 2-D array ``(batch, n)`` to its per-row norms ``(batch,)``.
    """
    if callable(norm):
        return lambda xp, x: norm(x)
    if isinstance(norm, str) and norm in NORMS:
        return NORMS[norm]
    close = difflib.get_close_matches(str(norm), list(NORMS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown norm {norm!r}{hint}; valid norms: 'max', 'l2', 'rms' or a callable")


def default_tolerance(xp, dtype) -> float:
    """SciML's default, ``eps ** (4/5)`` of the working precision (3e-13 in float64, 3e-6 in float32)."""
    return float(xp.finfo(dtype).eps) ** 0.8


def converged(fnorm, unorm, abstol: float, reltol: float):
    """Per element: ``norm(resid) <= abstol`` or ``norm(resid) <= reltol * norm(u)``."""
    return (fnorm <= abstol) | (fnorm <= reltol * unorm)
