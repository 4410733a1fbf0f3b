"""What both drivers share (the result, the per-element select), and the eager driver's *working
set*: the rows of a batch still running, gathered into a smaller batch.

A batched eager solve in which most elements have stopped would otherwise keep paying for every
element at every iteration (converged ones ride along with the batch; a few stragglers can cost
a hundred full-batch iterations). When at most half of the current rows are running, the driver
retires the others — their book entries, best iterate and residual are final — and continues on
the running rows alone: every per-element state leaf (``ndim >= 1``, batch first, by the
algorithm contract) is gathered with ``take``, and the solve's context is rebuilt for the
smaller batch. The retired rows are merged back at the end (``take`` + ``where``: no integer
scatter, which the array API does not have).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _backend as backend

__all__ = ["DriverResult", "TRACE_ROWS", "tree_where", "take_rows", "index_array", "WorkingSet"]

#: rows of the residual trace under jax.jit (shapes are static there): ``store_trace=True`` keeps
#: at most this many, ``store_trace=N`` N; later iterations overwrite the last row
TRACE_ROWS = 1024


class DriverResult(NamedTuple):
    u: Any  # (B, n) best iterate
    fu: Any  # (B, n) residual at u
    codes: Any  # (B,) int codes
    niter: Any  # int, or 0-d array under JAX tracing
    niter_el: Any  # (B,)
    state: Any  # the final algorithm state (for the counters)
    trace: Any  # (niter + 1, B) residual norms, or None
    scales: Any = None  # (fnorm0, uscale0) of the start, per element (for the attempts of a chain)
    njvp: Any = 0  # JVPs the verdict spent measuring the size of F's terms (``verdict.wants_terms``)
    nf: Any = 0  # evaluations of F those measurements cost besides their JVPs


def tree_where(xp, mask, new, old, workspaces=()):
    """Per-element select over an algorithm state: 0-d leaves are global and taken from ``new``, and
    so are the algorithm's ``workspaces`` (buffers written in place: an element the driver rejects
    has stopped, and masking them would copy whole histories every iteration)."""
    if hasattr(new, "_fields"):
        if workspaces:
            return type(new)(*(a if f in workspaces else tree_where(xp, mask, a, b)
                               for f, a, b in zip(new._fields, new, old)))
        return type(new)(*(tree_where(xp, mask, a, b) for a, b in zip(new, old)))
    if isinstance(new, (tuple, list)):
        return type(new)(tree_where(xp, mask, a, b) for a, b in zip(new, old))
    if new is None or not hasattr(new, "ndim") or new.ndim == 0:
        return new
    m = xp.reshape(mask, (mask.shape[0],) + (1,) * (new.ndim - 1))
    return xp.where(m, new, old)


def index_array(xp, ints, device):
    """Host integers as a 1-D device index array (int32 on JAX, which has no int64 without x64)."""
    return xp.asarray(np.asarray(ints).tolist(), dtype=xp.int32 if backend.is_jax(xp) else xp.int64, device=device)


def take_rows(xp, tree, idx):
    """Rows ``idx`` (a 1-D integer array) of every per-element leaf; 0-d leaves and non-arrays kept."""
    if hasattr(tree, "_fields"):
        return type(tree)(*(take_rows(xp, a, idx) for a in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(take_rows(xp, a, idx) for a in tree)
    if tree is None or not hasattr(tree, "ndim") or tree.ndim == 0:
        return tree
    return xp.take(tree, idx, axis=0)


def gatherable(tree) -> bool:
    """Whether every leaf of an algorithm state is an array, a number or None (no opaque objects
    holding batch-sized buffers, which :func:`take_rows` could not narrow)."""
    if hasattr(tree, "_fields") or isinstance(tree, (tuple, list)):
        return all(gatherable(a) for a in tree)
    return tree is None or hasattr(tree, "ndim") or isinstance(tree, (bool, int, float))


class WorkingSet:
    """The full-batch record of a solve that narrows its batch: the book and best iterate of every
    row (host arrays / device arrays of the full batch) and the rows currently stepped."""

    def __init__(self, xp, device, book, best_u, best_fu):
        self.xp, self.device = xp, device
        self.B = int(np.asarray(book.codes).shape[0])
        self.rows = np.arange(self.B)  # full-batch index of each current row
        self.book = type(book)(*(np.array(a, copy=True) for a in book))
        self.best_u, self.best_fu = best_u, best_fu

    def retire(self, book, best_u, best_fu):
        """Write the current rows' book and best iterate into the full-batch record."""
        xp, rows = self.xp, self.rows
        for full, cur in zip(self.book, book):
            full[rows] = cur
        if rows.shape[0] == self.B:
            self.best_u, self.best_fu = best_u, best_fu
            return
        inv = np.zeros(self.B, dtype=np.int64)
        inv[rows] = np.arange(rows.shape[0])
        mask = np.zeros(self.B, dtype=bool)
        mask[rows] = True
        inv_d = index_array(xp, inv, self.device)
        m = xp.reshape(xp.asarray(mask.tolist(), dtype=xp.bool, device=self.device), (self.B, 1))
        self.best_u = xp.where(m, xp.take(best_u, inv_d, axis=0), self.best_u)
        self.best_fu = xp.where(m, xp.take(best_fu, inv_d, axis=0), self.best_fu)

    def narrow(self, keep):
        """Keep the current rows ``keep`` (local host indices)."""
        self.rows = self.rows[keep]

    def full_row(self, row, last):
        """A trace row of the full batch: ``row`` on the current rows, ``last`` elsewhere."""
        out = np.array(last, dtype=np.float64, copy=True)
        out[self.rows] = row
        return out
