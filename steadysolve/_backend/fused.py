"""Fused operations of the eager hot paths: one generic array-API spelling each, and a PyTorch one
(``torch_ops``) where a measurement showed it cheaper (fewer kernels, no temporaries, no wrapper).

The generic spellings are exactly what the algorithms computed before (same arithmetic, same
rounding on NumPy and array_api_strict); the PyTorch ones may differ in the last bit (``baddbmm``
rounds ``x - c X`` once per element, a ``bmm`` of a stacked pair sums in another order).
"""

from __future__ import annotations

from .. import _backend as backend
from . import torch_ops

__all__ = ["minus_combined", "rows_dot2", "set_row_diff", "set_row_step", "host_norms", "from_host", "host_resident",
           "all_true", "all_finite", "row_squares", "row_sumsq", "row_views", "set_row_scaled", "weighted_rows", "select"]

_NP = backend.host_numpy()
_vecdot = getattr(_NP, "vecdot", None)


def row_squares(x):
    """Per-row ``sum(x * x)`` of a ``(B, n)`` NumPy array: one ``vecdot`` (NumPy >= 2), else ``einsum``."""
    return _vecdot(x, x) if _vecdot is not None else _NP.einsum("ij,ij->i", x, x)


def row_sumsq(xp, x):
    """Per-row ``sum(x * x)`` of a ``(B, n)`` array: one ``vecdot`` on NumPy and PyTorch."""
    if type(x) is _NP.ndarray:
        return row_squares(x)
    if backend.is_torch(xp):
        return torch_ops.row_sumsq(x)
    return xp.sum(x * x, axis=1)


def weighted_rows(xp, w, R, shape):
    """``w @ R`` for weights ``w`` ``(m,)`` and rows ``R`` ``(m, N)``, reshaped to ``shape``: NumPy's ``dot``
    (a third of ``matmul``'s dispatch for a vector times a matrix)."""
    if type(R) is _NP.ndarray:
        return w.dot(R).reshape(shape)
    return xp.reshape(w @ R, shape)


def row_views(xp, Y, shape):
    """``shape`` views of the rows of the workspace ``Y`` where :func:`set_row_scaled` writes into them
    directly (NumPy, PyTorch); None elsewhere."""
    if type(Y) is _NP.ndarray:
        return [Y[i].reshape(shape) for i in range(Y.shape[0])]
    if backend.is_torch(xp):
        return [Y[i].view(shape) for i in range(Y.shape[0])]
    return None


def set_row_scaled(xp, Y, i: int, x, h, views=None):
    """``Y[i] = h * x`` (``h`` None: ``Y[i] = x``) in the workspace ``Y`` ``(m, B * n)``, for ``x`` ``(B, n)``
    and ``h`` a Python float or a ``(B, 1)`` column; returns ``Y``. With ``views`` (:func:`row_views`) the
    product is written into the row itself (one operation, no temporary)."""
    if views is not None:
        if type(Y) is _NP.ndarray:
            if h is None:
                _NP.copyto(views[i], x)
            else:
                _NP.multiply(x, h, out=views[i])
        elif h is None:
            views[i].copy_(x)
        else:
            torch_ops.mul_into(views[i], x, h)
        return Y
    return backend.set_at(xp, Y, (i, slice(None)), xp.reshape(x if h is None else h * x, (Y.shape[1],)))


def _torch_batch(xp, x) -> bool:
    return backend.is_torch(xp) and x.shape[0] > 1  # one element: backend's 2-D products


def minus_combined(xp, x, c, X):
    """``x - c[b] @ X[b]`` per element (``x``: ``(B, n)``, ``c``: ``(B, m)``, ``X``: ``(B, m, n)``)."""
    if _torch_batch(xp, x):
        return torch_ops.minus_combined(x, c, X)
    return x - backend.combine_rows(xp, c, X)


def rows_dot2(xp, X, a, b):
    """``(X[b] @ a[b], X[b] @ b[b])`` per element: ``(B, m)`` each."""
    if _torch_batch(xp, a):
        return torch_ops.rows_dot2(X, a, b)
    return backend.rows_dot(xp, X, a), backend.rows_dot(xp, X, b)


def set_row_diff(xp, X, slot: int, a, b):
    """``X[:, slot, :] = a - b`` in the workspace ``X``; returns ``(X, a - b)`` (on PyTorch the second
    is the written row itself: one kernel, no temporary)."""
    if backend.is_torch(xp):
        return X, torch_ops.sub_into(X[:, slot], a, b)
    d = a - b
    return backend.set_at(xp, X, (slice(None), slot, slice(None)), d), d


def set_row_step(xp, X, slot: int, a, b, d, scale: float = 1.0):
    """``X[:, slot, :] = (a - b) + scale * d`` in the workspace ``X``; returns ``X``."""
    sd = d if scale == 1.0 else scale * d
    if backend.is_torch(xp):
        torch_ops.sub_into(X[:, slot], a, b).add_(sd)
        return X
    return backend.set_at(xp, X, (slice(None), slot, slice(None)), (a - b) + sd)


def host_norms(xp, norm, a, b, flag):
    """The per-row norms of ``a`` and ``b`` and ``flag`` as one float64 host array ``(2 or 3, B)``
    (one device-to-host copy) when a fused spelling exists for ``norm`` (a solve context's norm
    marked with ``kind``) on this library; None otherwise."""
    kind = getattr(norm, "kind", None)
    if kind is None or not backend.is_torch(xp):
        return None
    return torch_ops.norms_to_host(kind, a, b, flag)


def from_host(xp, arr, dtype, device):
    """A small host NumPy array as an array of ``xp`` (``backend.from_numpy``; on PyTorch without the
    wrapper's checks)."""
    if backend.is_torch(xp):
        return torch_ops.from_host(arr, dtype, device)
    return backend.from_numpy(xp, arr, dtype, device)


def host_resident(xp, x) -> bool:
    """Whether ``x`` lives in host memory, so that reading a value back costs no device sync
    (NumPy; PyTorch CPU tensors)."""
    return backend.is_numpy(xp) or (backend.is_torch(xp) and x.device.type == "cpu")


def all_true(xp, x) -> bool:
    """``bool(all(x))`` (a host read of one value)."""
    return bool(x.all()) if backend.is_torch(xp) else bool(xp.all(x))


def all_finite(xp, x):
    """Whether every entry of the floating-point ``x`` is finite, as a 0-d array. On PyTorch through
    ``max(|x|)`` (NaN propagates, Inf is its own maximum): two vectorised kernels, where ``isfinite``
    on CPU is not vectorised (docs/benchmarks.md)."""
    if backend.is_torch(xp):
        return torch_ops.all_finite(x)
    return xp.all(xp.isfinite(x))


#: below this many entries ``where`` costs less than the blend's extra calls
_BLEND_MIN = 2048


def select(xp, cond, pairs):
    """``[where(cond, x, y) for x, y in pairs]``, each pair two arrays of ``cond``'s shape and one dtype.

    NumPy's and PyTorch's CPU ``where`` branch per entry: on a ``cond`` without a pattern (a bracket
    keeping one end here and the other there) they cost ~7 ns per entry, 20 times an addition. There
    the choice is a bitwise blend of the bit patterns, ``y ^ ((x ^ y) & m)`` with ``m`` all ones where
    ``cond`` holds (one byte per entry, widened by the ``&``): exact, NaN and signed zeros included,
    three vectorised integer passes per pair and one allocation. Elsewhere (JAX, CuPy, GPU tensors,
    small arrays) it is ``where``.
    """
    x0 = pairs[0][0]
    if backend.is_numpy(xp) and type(x0) is _NP.ndarray and x0.size >= _BLEND_MIN:
        mask = _NP.negative(cond.view(_NP.int8))
        return [_blend(x, y, mask, _NP_INT[x.dtype.itemsize]) for x, y in pairs]
    if backend.is_torch(xp) and x0.device.type == "cpu" and x0.numel() >= _BLEND_MIN:
        ints = torch_ops.int_of_size()
        mask = cond.view(ints[1]).neg()
        return [_blend(x, y, mask, ints[x.element_size()]) for x, y in pairs]
    return [xp.where(cond, x, y) for x, y in pairs]


_NP_INT = {1: _NP.int8, 2: _NP.int16, 4: _NP.int32, 8: _NP.int64}


def _blend(x, y, mask, dt):
    """``where(mask, x, y)`` bitwise (``mask``: int8, -1 or 0), through integer views of one width."""
    yi = y.view(dt)
    r = x.view(dt) ^ yi
    r &= mask
    r ^= yi
    return r.view(x.dtype)
