"""``IntervalNonlinearProblem``: scalar roots of ``f`` on arrays of brackets ``[lo, hi]``.

Every element of ``lo`` / ``hi`` is its own problem: find ``x`` in ``[lo[i], hi[i]]`` with
``f(x, p)[i] = 0``, where ``f`` is *elementwise* (element ``i`` of its output depends on element
``i`` of ``x`` only). The bracketing methods (``ITP``, ``Brent``, ``Bisection``, ``Ridder``) keep a
sign change of ``f`` inside a shrinking bracket, so with a continuous ``f`` they cannot miss the
root; ``solve`` runs them on all elements at once (see ``_engine.bracket``).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

from . import _backend as backend
from ._backend import fused

__all__ = ["IntervalNonlinearProblem"]

_WHERE = "IntervalNonlinearProblem"


class IntervalNonlinearProblem:
    """Find ``x`` in ``[lo, hi]`` with ``f(x, p) = 0``, elementwise, on arrays of brackets.

    The interval form of SciML's ``IntervalNonlinearProblem`` and of SciPy's
    ``scipy.optimize.elementwise.find_root``: each element of ``lo`` / ``hi`` is one scalar
    problem, and one ``solve`` call solves them all (per-element convergence, return codes and
    counts). Solve it with a bracketing method: ``ss.solve(prob)`` (ITP, the default),
    ``"brent"``, ``"bisection"`` or ``"ridder"``.

    Parameters
    ----------
    f : callable
        ``f(x, p) -> values``, elementwise: an array of ``x``'s shape, dtype and library whose
        element ``i`` depends on ``x[i]`` only (and on ``p``). It is called on arrays of the
        brackets' shape, and, once most elements have stopped, on a flat array of the running
        ones with ``p``'s arrays of the brackets' shape (or broadcasting to it) gathered alike;
        an ``f`` that uses ``p`` across elements is detected by one check and always gets the
        whole batch.
    bracket : (lo, hi)
        Two arrays of one shape, one real floating dtype and one library (NumPy, CuPy,
        PyTorch, JAX, any array-API library), finite, with ``lo <= hi``. ``f`` should change
        sign between them; an element where it does not gets the return code ``NoBracket``.
        Two Python numbers are taken as NumPy float64 0-d arrays.
    p : any, optional
        Parameters, passed to ``f`` untouched (arrays broadcasting against ``x``, tuples, ...).

    Raises
    ------
    TypeError, ValueError
        ``f`` not callable; ``bracket`` not a pair; ``lo`` / ``hi`` not arrays, of different
        shapes, dtypes or libraries, integer, empty, not finite, ``lo > hi`` somewhere, or
        ``hi - lo`` overflowing.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> p = np.array([2.0, 3.0, 10.0])
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: x**2 - p, (np.zeros(3), np.full(3, 4.0)), p)
    >>> sol = ss.solve(prob)                      # ITP, one call for the three brackets
    >>> sol.u, sol.retcode.name
    (array([1.41421356, 1.73205081, 3.16227766]), 'Success')
    >>> bool(np.abs(sol.u - np.sqrt(p)).max() < 1e-12), sol.stats.niter_per_element
    (True, array([..., ..., ...], dtype=int32))
    """

    kind = "interval"

    def __init__(self, f: Callable, bracket: Any, p: Any = None):
        if not callable(f):
            raise TypeError(f"{_WHERE}: f must be callable, got {type(f).__name__}")
        lo, hi = _pair(bracket)
        _check_bracket(lo, hi, p)
        self.f = f
        self.lo, self.hi = lo, hi
        self.p = p

    @property
    def bracket(self) -> tuple:
        """``(lo, hi)``."""
        return self.lo, self.hi

    def remake(self, *, bracket=None, p=None):
        """A copy with a new ``bracket`` and/or ``p`` (``f`` kept)."""
        return type(self)(self.f, self.bracket if bracket is None else bracket, self.p if p is None else p)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.lo, "shape", ()))
        lib = backend.library_name(self.lo)
        return f"{_WHERE}(f={getattr(self.f, '__name__', self.f)!r}, bracket=<{lib} {shape}>)"


def _pair(bracket):
    """``(lo, hi)`` from a pair; two Python numbers become NumPy float64 0-d arrays."""
    if not isinstance(bracket, (tuple, list)) or len(bracket) != 2:
        got = f"a {type(bracket).__name__} of length {len(bracket)}" if isinstance(bracket, (tuple, list)) \
            else f"a {type(bracket).__name__}"
        raise TypeError(f"{_WHERE}: bracket must be a pair (lo, hi) of arrays, got {got}")
    lo, hi = bracket
    numbers_ = [isinstance(v, numbers.Real) and not isinstance(v, bool) and not backend.is_array(v) for v in (lo, hi)]
    if all(numbers_):
        import numpy as np

        return np.asarray(float(lo)), np.asarray(float(hi))
    for name, v, is_number in (("lo", lo, numbers_[0]), ("hi", hi, numbers_[1])):
        if is_number:
            raise TypeError(f"{_WHERE}: {name} is a Python number but the other end is an array; give both ends "
                            f"as arrays of one shape and dtype (e.g. xp.full_like(other, {float(v)!r}))")
        if not backend.is_array(v):
            raise TypeError(f"{_WHERE}: {name} must be an array (NumPy, CuPy, PyTorch, JAX, ...), "
                            f"got {type(v).__name__}")
    return lo, hi


def _check_bracket(lo, hi, p) -> None:
    """Shape, dtype, library; finiteness, order and width where the values are concrete."""
    xp = backend.namespace(("lo", lo), ("hi", hi), ("p", p))
    if tuple(lo.shape) != tuple(hi.shape):
        raise ValueError(f"{_WHERE}: lo has shape {tuple(lo.shape)} but hi has shape {tuple(hi.shape)}; "
                         "the two ends must have one shape (one bracket per element)")
    if lo.dtype != hi.dtype:
        raise TypeError(f"{_WHERE}: lo has dtype {lo.dtype} but hi has dtype {hi.dtype}; give both ends one dtype")
    if not backend.is_floating(xp, lo.dtype):
        raise TypeError(f"{_WHERE}: the bracket must have a real floating-point dtype, got {lo.dtype}; "
                        "convert it first (e.g. lo.astype(float64))")
    if any(int(d) == 0 for d in lo.shape):
        raise ValueError(f"{_WHERE}: the bracket arrays are empty (shape {tuple(lo.shape)}); there is nothing to solve")
    if backend.is_traced(lo) or backend.is_traced(hi):
        return  # inside jax.jit / vmap: the values are checked by the solve's codes instead
    for name, v in (("lo", lo), ("hi", hi)):
        if not backend.host_bool(fused.all_finite(xp, v)):
            raise ValueError(f"{_WHERE}: {name} contains NaN or Inf; the bracket must be finite")
    wrong = backend.to_numpy(xp, lo > hi).reshape(-1)
    if wrong.any():
        first = int(wrong.argmax())
        raise ValueError(f"{_WHERE}: lo > hi at {int(wrong.sum())} element(s) (the first at flat index {first}: "
                         f"lo={float(backend.to_numpy(xp, lo).reshape(-1)[first])!r}, "
                         f"hi={float(backend.to_numpy(xp, hi).reshape(-1)[first])!r}); give each bracket as (lo, hi)")
    if not backend.host_bool(xp.all(hi * 0.5 - lo * 0.5 < float(xp.finfo(lo.dtype).max) * 0.5)):  # (no overflow)
        raise ValueError(f"{_WHERE}: hi - lo overflows the dtype {lo.dtype}; use a narrower bracket")
