"""Norms and tolerances: how a solve measures a residual and what a tolerance means.

Inside the solvers every array is 2-D, ``(batch, n)``; norms reduce over axis 1 and return
one value per batch element. What ``Success`` means (the verdict every driver runs on these
norms) is written in :mod:`steadysolve._engine.verdict` and explained in the concepts page.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from . import _backend as backend
from ._checks import suggest

__all__ = ["get_norm", "NORMS", "HOST_NORMS", "default_tolerance", "resolve_tolerances", "max_norm", "l2_norm",
           "rms_norm"]


def max_norm(xp, x):
    return xp.max(xp.abs(x), axis=1)


def l2_norm(xp, x):
    return backend.l2(xp, x)


def rms_norm(xp, x):
    return xp.sqrt(xp.mean(x * x, axis=1))


NORMS: dict[str, Callable] = {"max": max_norm, "inf": max_norm, "l2": l2_norm, "rms": rms_norm}


def _host_max(x) -> float:
    return float(abs(x).max())


def _host_l2(x) -> float:
    x = x.reshape(-1)
    return math.sqrt(float(x @ x))


def _host_rms(x) -> float:
    x = x.reshape(-1)
    return math.sqrt(float(x @ x) / x.size)


#: the built-in norms of one host (NumPy) row as a Python float, in two or three ndarray methods
#: (the unbatched eager driver's per-iteration norms: no wrapper layers, no 1-element arrays)
HOST_NORMS: dict[Callable, Callable] = {max_norm: _host_max, l2_norm: _host_l2, rms_norm: _host_rms}


def get_norm(norm) -> Callable:
    """Resolve ``norm`` into ``f(xp, x2d) -> per-row norms``.

    ``norm`` is one of ``"max"`` (alias ``"inf"``), ``"l2"``, ``"rms"``, or a callable
    ``norm(x)`` that maps a 2-D array ``(batch, n)`` to its per-row norms ``(batch,)``.
    """
    if callable(norm):
        def user_norm(xp, x):
            return norm(x)

        user_norm.user = True
        return user_norm
    if isinstance(norm, str) and norm in NORMS:
        return NORMS[norm]
    close = suggest(str(norm), list(NORMS))
    hint = f" (did you mean {close!r}?)" if close else ""
    raise ValueError(f"unknown norm {norm!r}{hint}; valid norms: 'max', 'l2', 'rms' or a callable")


def default_tolerance(xp, dtype) -> float:
    """SciML's default, ``eps ** (4/5)`` of the working precision (3e-13 in float64, 3e-6 in float32)."""
    return float(xp.finfo(dtype).eps) ** 0.8


def resolve_tolerances(abstol: Optional[float], reltol: Optional[float], default: float) -> tuple:
    """``(abstol, reltol)`` as a solve uses them: both default to ``default`` when neither is given;
    when the user gives exactly one, the other is 0, so that it cannot loosen the one given."""
    if abstol is None and reltol is None:
        return default, default
    return (0.0 if abstol is None else abstol), (0.0 if reltol is None else reltol)
