"""The eager bracketing loop on parts of a batch (see ``bracket``): on the running elements alone
once most have stopped (a step then costs what the running ones cost, not the whole batch), and on
NumPy in blocks (the arrays of a step then stay in cache). Both for an ``f`` elementwise in ``x`` and
``p``, checked once."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _backend as backend

__all__ = ["Outcome", "Narrowing", "NARROW_AT", "BLOCK", "blocked", "run_blocks", "gather_p", "same_values"]


class Outcome(NamedTuple):
    """What a loop leaves: the final brackets (ends in either order, and ``f`` there), the codes and
    iteration counts per element, the iterations of the loop, and its calls of ``f`` beyond the two
    at the ends (the method's, and the checks that ``f`` is elementwise in ``p``)."""

    x0: Any
    x1: Any
    f0: Any
    f1: Any
    code: Any
    niter: Any
    it: Any
    calls: Any


#: the eager loop continues on the running elements alone once at most this share of the current
#: elements runs, and while at least _NARROW_MIN are current (below that, a step costs its dispatch)
NARROW_AT = 0.5
_NARROW_MIN = 4096


class Narrowing:
    """The eager loop on the running elements alone, for an ``f`` elementwise in ``x`` and ``p``.

    Keeps flat outputs for the whole batch and the flat index of every current element in it;
    ``narrow`` writes the current elements' results there and gathers the running ones (their state,
    and the matching elements of every array in ``p`` of the brackets' shape or broadcasting to it);
    ``finish`` writes the last ones. The first time, ``f`` on the gathered elements is compared with
    the values the whole batch gave (one more call of ``f``): if it fails or differs (``f`` uses ``p``
    across elements, or needs the brackets' shape), the solve goes on with the whole batch.
    """

    def __init__(self, xp, prob, alg, make_ctx, checked=False):
        self.xp, self.prob, self.alg, self.make_ctx = xp, prob, alg, make_ctx
        self.shape = tuple(prob.lo.shape)
        self.rows = None  # flat index in the whole batch of each current element (None: all, in order)
        self.out = None  # the whole batch's flat (x0, x1, f0, f1, code, niter)
        self.checked = checked  # (already checked by the caller: no check call here)
        self.extra_nf = 0
        # libraries that gather and scatter by integer arrays (array_api_strict does not scatter)
        self.enabled = backend.library_name(prob.lo) in ("numpy", "torch", "cupy") and prob.lo.ndim > 0

    def worth_it(self, nrun, state) -> bool:
        current = math.prod(tuple(state.book.code.shape))
        return self.enabled and current >= _NARROW_MIN and nrun <= NARROW_AT * current

    def _flat(self, x):
        return self.xp.reshape(x, (-1,))

    def _write(self, state):
        """The current elements' results into the whole batch's flat outputs."""
        xp = self.xp
        parts = [self._flat(a) for a in (*self.alg.ends(state), state.book.code, state.book.niter)]
        if self.rows is None:
            self.out = [xp.asarray(a, copy=True) for a in parts]
        else:
            self.out = [backend.set_at(xp, o, self.rows, a) for o, a in zip(self.out, parts)]

    def narrow(self, state, running):
        xp = self.xp
        keep = xp.nonzero(self._flat(running))[0]
        rows = keep if self.rows is None else xp.take(self.rows, keep)
        sub = _take_tree(xp, state, keep, self._flat)
        x0 = self.alg.ends(sub)[0]
        try:
            p = gather_p(xp, self.prob.p, self.shape, rows)
        except ValueError:  # an array of p that does not broadcast to the brackets' shape
            self.enabled = False
            return None
        ctx = self.make_ctx(p, x0)
        if not self.checked:  # f on the gathered elements must give what it gave on the whole batch
            self.checked = True
            self.extra_nf += 1
            if not same_values(xp, ctx.f, x0, self.alg.ends(sub)[2]):
                self.enabled = False
                return None
        self._write(state)
        self.rows = rows
        return sub, ctx

    def finish(self, state, it) -> Outcome:
        if self.rows is None:
            return Outcome(*self.alg.ends(state), state.book.code, state.book.niter, it,
                           self.alg.evals_per_step * it + self.extra_nf)
        self._write(state)
        whole = [self.xp.reshape(a, self.shape) for a in self.out]
        return Outcome(*whole, it, self.alg.evals_per_step * it + self.extra_nf)


def _take_tree(xp, tree, idx, flat):
    """Every array of a state (nested named tuples) at the flat indices ``idx``."""
    if tree is None:
        return None
    if isinstance(tree, tuple):
        items = [_take_tree(xp, t, idx, flat) for t in tree]
        return tree._make(items) if hasattr(tree, "_make") else tuple(items)
    return xp.take(flat(tree), idx, axis=0)


def gather_p(xp, p, shape, rows):
    """``p`` with its arrays of the brackets' shape (or broadcasting to it) at the flat indices ``rows``
    (an integer array, or a slice: then views where the arrays are contiguous); 0-d arrays and
    everything else unchanged."""
    if isinstance(p, tuple):
        items = [gather_p(xp, v, shape, rows) for v in p]
        return p._make(items) if hasattr(p, "_make") else tuple(items)
    if isinstance(p, list):
        return [gather_p(xp, v, shape, rows) for v in p]
    if isinstance(p, dict):
        return {k: gather_p(xp, v, shape, rows) for k, v in p.items()}
    if backend.is_array(p) and p.ndim > 0:
        if tuple(p.shape) != shape:
            p = xp.broadcast_to(p, shape)  # (raises for a shape that does not broadcast: then the check fails)
        flat = xp.reshape(p, (-1,))
        return flat[rows] if isinstance(rows, slice) else xp.take(flat, rows, axis=0)
    return p


def same_values(xp, f, x, fx) -> bool:
    """Whether ``f(x)`` reproduces ``fx`` (NaN for NaN, to rounding)."""
    try:
        got = backend.to_numpy(xp, f(x))
    except Exception:
        return False
    np = backend.host_numpy()
    want = backend.to_numpy(xp, fx)
    if got.shape != want.shape:
        return False
    tol = float(np.finfo(want.dtype).eps) ** 0.5
    finite = np.isfinite(want)
    scale = float(np.abs(want[finite]).max()) if finite.any() else 1.0
    return bool(np.allclose(got, want, rtol=tol, atol=tol * max(scale, 1e-300), equal_nan=True))


#: NumPy: a batch of more than 2 BLOCK elements is solved in blocks of at most BLOCK elements, one
#: after the other, by the same loop: the arrays of a step then stay in cache and the allocator reuses
#: its memory (less CPU time on large batches than one loop over the whole batch, and insensitive to
#: the block size around this value: docs/benchmarks.md)
BLOCK = 25000


class _Part(NamedTuple):
    """A block of a batch (flat), standing for the problem in the loop; ``f`` was checked on it."""

    f: Any
    lo: Any
    hi: Any
    p: Any
    checked: bool = True


def blocked(prob) -> bool:
    return backend.library_name(prob.lo) == "numpy" and prob.lo.ndim > 0 and math.prod(prob.lo.shape) > 2 * BLOCK


def run_blocks(xp, prob, flo, fhi, run, caller):
    """The :class:`Outcome` of ``run(part, flo_part, fhi_part)`` (the eager loop) block by block; of
    ``run(prob, flo, fhi)`` on the whole batch when ``f`` on a block (``caller(p, like)``: ``f`` with
    ``p``'s per-element arrays sliced alike) does not give what it gave on the whole batch (checked on
    the first block: one call of ``f``); None when an array of ``p`` does not broadcast to the
    brackets' shape."""
    shape = tuple(prob.lo.shape)
    size = math.prod(shape)
    count = -(-size // BLOCK)
    edges = [size * i // count for i in range(count + 1)]
    flat = [xp.reshape(a, (-1,)) for a in (prob.lo, prob.hi, flo, fhi)]
    parts = []
    for start, stop in zip(edges[:-1], edges[1:]):
        try:
            p = gather_p(xp, prob.p, shape, slice(start, stop))
        except ValueError:  # an array of p that does not broadcast to the brackets' shape
            return None
        parts.append((_Part(prob.f, flat[0][start:stop], flat[1][start:stop], p), flat[2][start:stop],
                      flat[3][start:stop]))
    first, flo0, _ = parts[0]
    if not same_values(xp, caller(first.p, first.lo), first.lo, flo0):
        out = run(prob, flo, fhi)  # the whole batch
        return out._replace(calls=out.calls + 1)
    outs = [run(part, a, b) for part, a, b in parts]
    whole = [xp.reshape(xp.concat([o[i] for o in outs]), shape) for i in range(6)]
    return Outcome(*whole, max(o.it for o in outs), 1 + sum(o.calls for o in outs))
