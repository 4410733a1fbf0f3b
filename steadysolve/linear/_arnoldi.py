"""The Arnoldi/Givens kernel of restarted GMRES, written once for every driver.

A cycle of GMRES builds an orthonormal basis ``V`` of the Krylov space of ``r0`` (Arnoldi, by
classical Gram-Schmidt, see :func:`gram_schmidt`) and solves the small least-squares problem
``min ||beta e1 - H y||`` of its Hessenberg matrix ``H``. ``H`` is reduced to triangular form as
its columns arrive, by Givens rotations (:func:`givens`, :func:`rotate`), which gives the
residual norm after every Krylov step for free.

The scalar arithmetic is written against a small namespace ``ns``, as the verdict is:

* NumPy on the host: the eager driver's batch, after the one device-to-host transfer of each
  Krylov step (the Hessenberg column in float64);
* ``jax.numpy`` inside ``lax.while_loop``: the traced driver, where the step index ``j`` is a
  traced integer;
* Python floats (:data:`FLOATS`): the one-system engine of :mod:`steadysolve._small.gmres`, which
  shares :func:`givens` and :func:`rotate` but keeps its rotations in lists.

Entries are read and written as contiguous blocks at offset ``j`` (``take_block`` / ``put_block``:
NumPy slices on the host, ``lax.dynamic_slice`` / ``dynamic_update_slice`` when ``j`` is traced,
which XLA performs in place and compiles faster than the scatters of ``x.at[:, j].set``).

With arrays the rotations are accumulated into an orthogonal ``(m + 1, m + 1)`` factor ``Q`` per
element (:class:`Rotated`), so that applying all earlier rotations to a new column is one batched
product; the products with the basis are the only work that scales with ``n``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import _backend as backend
from .._backend import combine_rows, l2, put_block, rows_dot, take_block
from ..retcodes import ReturnCode

__all__ = ["REORTH_KEEP", "CHUNK", "MIN_SIZE", "GMRESResult", "Rotated", "FLOATS", "givens", "rotate", "rotated",
           "add_column", "solve_rotated", "gram_schmidt", "blocked", "padded_rows", "blocked_cgs2",
           "search_direction", "start", "restarted", "result_codes"]

#: The eager drivers orthogonalise a second time only when the first classical Gram-Schmidt pass
#: kept less than this fraction of the vector's norm. One pass loses orthogonality in proportion
#: to ||w|| / ||w - V V^T w|| (times eps), so this bounds the loss per step at 10 eps; the
#: classical DGKS bound 1/sqrt(2) re-orthogonalised most GMRES steps (each new A v lies mostly in
#: the Krylov space already) for no change in the iterates of the benchmark problems.
REORTH_KEEP = 0.1

#: A column whose rotated diagonal is below this many ``eps`` times the column's norm is a
#: breakdown: the new Krylov vector lies in the space already spanned (a singular operator).
BREAKDOWN = 100.0

_MAXITERS = ReturnCode.MaxIters.code
_FAILED = ReturnCode.LinearSolveFailed.code


class GMRESResult(NamedTuple):
    x: Any  # (B, n)
    codes: Any  # (B,) int32
    resid: Any  # (B,) residual 2-norm
    nmatvec: Any  # int (eager) or 0-d int32 array (traced)
    niter: Any  # Krylov steps
    ncycle: Any  # restart cycles


# ---------------------------------------------------------------------------------------------
# Givens rotations: the scalar arithmetic every driver shares
# ---------------------------------------------------------------------------------------------

class _Floats:
    """The namespace functions :func:`givens` uses, on Python floats (one system on the host)."""

    hypot = staticmethod(math.hypot)
    abs = staticmethod(abs)

    @staticmethod
    def where(c, a, b):
        return a if c else b


FLOATS = _Floats


def givens(ns, a, b, g_j, hnorm, eps):
    """The rotation that zeroes ``b`` below ``a`` (the diagonal and subdiagonal of the newest column,
    the earlier rotations applied), and its effect on the rotated right-hand side ``g``.

    Returns ``(r, c, s, g_j, g_j1, resid, kept)``: the new diagonal ``r = hypot(a, b)``, the
    rotation ``(c, s)``, the new entries ``j`` and ``j + 1`` of ``g``, the residual norm ``|g_j1|``
    after this step, and ``kept``: False when ``r`` is at the rounding level of the column (its
    2-norm ``hnorm``), a breakdown. ``r = 0`` gives the identity rotation. Non-finite input gives
    a non-finite ``r``, which the caller tests.
    """
    r = ns.hypot(a, b)
    pos = r > 0
    rs = ns.where(pos, r, 1.0)
    c = ns.where(pos, a / rs, 1.0)
    s = ns.where(pos, b / rs, 0.0)
    return r, c, s, c * g_j, -s * g_j, ns.abs(s * g_j), r > (BREAKDOWN * eps) * hnorm


def rotate(c, s, x, y):
    """The rotation ``(c, s)`` applied to the pair ``(x, y)`` (rows of ``Q``, entries of a column)."""
    return c * x + s * y, c * y - s * x


class Rotated(NamedTuple):
    """One cycle's least-squares problem per element, reduced by Givens rotations (array namespaces)."""

    Q: Any  # (B, m+1, m+1) the rotations so far, accumulated (the identity below the rows reached)
    R: Any  # (B, m, m) the rotated Hessenberg matrix: its upper triangle (below it: stale entries)
    g: Any  # (B, m+1) the rotated right-hand side, beta Q e1
    valid: Any  # (B, m) column j holds a valid Krylov step
    active: Any  # (B,) still iterating in this cycle
    failed: Any  # (B,) broke down or met NaN/Inf
    resid: Any  # (B,) the residual norm (of the last valid step)


def rotated(ns, resid, running, failed, m, dtype):
    """The least-squares problem of a new cycle: ``g = ||r0|| e1`` for the ``running`` elements."""
    B = resid.shape[0]
    g = ns.zeros((B, m + 1), dtype=dtype)
    g = put_block(ns, g, (0, 0), ns.where(running, resid, 0.0)[:, None])
    Q = ns.eye(m + 1, dtype=dtype) * ns.ones((B, 1, 1), dtype=dtype)
    return Rotated(Q, ns.zeros((B, m, m), dtype=dtype), g, ns.zeros((B, m), dtype=bool), running, failed, resid)


def add_column(ns, s: Rotated, hcol, j, live: int, eps, tol, soft=None):
    """Column ``j`` of the Hessenberg matrix into the reduced problem; returns ``(s, ok)``.

    ``hcol`` (``(B, live)``) holds the column's first ``live`` entries, the Gram-Schmidt
    coefficients and, at ``j + 1``, the norm of the orthogonalised vector; the entries beyond
    are zero (the eager driver passes ``live = j + 2``, the traced one the whole column). ``ok``
    per element: the step is valid (active, finite, no breakdown). An element stops for the
    cycle when it converged (``resid <= tol``) or its step is not valid, and has failed in the
    latter case, except when ``soft``: a search direction that was an augmentation vector
    nearly dependent on the space already spanned is no failure (the next cycle continues from
    the true residual).
    """
    B = hcol.shape[0]
    t = ns.matmul(s.Q[:, :live, :live], ns.reshape(hcol, (B, live, 1)))[:, :, 0]  # the earlier rotations
    pair = take_block(ns, t, (0, j), (B, 2))
    g_j = take_block(ns, s.g, (0, j), (B, 1))[:, 0]
    r, c, sn, gj, gj1, resid_new, kept = givens(ns, pair[:, 0], pair[:, 1], g_j, l2(ns, hcol), eps)
    finite = ns.isfinite(r) & ns.all(ns.isfinite(t), axis=1)
    ok = s.active & finite & kept
    rows = min(live, s.R.shape[1])  # row m of a column is the subdiagonal of the last one: not stored
    R = put_block(ns, s.R, (0, 0, j), t[:, :rows, None])  # the subdiagonal entry stays: solve_rotated skips it
    R = put_block(ns, R, (0, j, j), r[:, None, None])
    g = put_block(ns, s.g, (0, j), gj[:, None])
    g = put_block(ns, g, (0, j + 1), gj1[:, None])
    Qj = take_block(ns, s.Q, (0, j, 0), (B, 2, s.Q.shape[2]))
    qj, qj1 = rotate(c[:, None, None], sn[:, None, None], Qj[:, :1, :], Qj[:, 1:, :])
    Q = put_block(ns, s.Q, (0, j, 0), qj)
    Q = put_block(ns, Q, (0, j + 1, 0), qj1)
    valid = put_block(ns, s.valid, (0, j), ok[:, None])
    resid = ns.where(ok, resid_new, s.resid)
    stopped = s.active & ~ok
    if soft is not None:
        stopped = stopped & ~(soft & finite)
    active = ok & ~(resid_new <= tol)
    return Rotated(Q, R, g, valid, active, s.failed | stopped, resid), ok


def solve_rotated(ns, s: Rotated, ncols: int):
    """``y`` (``(B, ncols)``) from the valid columns of the triangular system (zero for the others).

    The valid columns of an element are a prefix (it stops at its first invalid step), so the
    upper-triangular system with identity columns in place of the others is regular.
    """
    dtype = s.R.dtype
    idx = ns.arange(ncols)
    Rm = ns.where(idx[:, None] <= idx[None, :], s.R[:, :ncols, :ncols], 0.0)  # the upper triangle
    R_eff = ns.where(s.valid[:, None, :ncols], Rm, ns.eye(ncols, dtype=dtype)[None, :, :])
    rhs = ns.where(s.valid[:, :ncols], s.g[:, :ncols], 0.0)
    y = backend.solve_small(ns, R_eff, rhs[:, :, None])[:, :, 0]
    return ns.where(ns.isfinite(y), y, 0.0)


def start(ns, bnorm, rnorm, reltol, abstol, active):
    """``(tol, resid, failed)`` of a solve's start: the per-element tolerance
    ``max(reltol ||b||, abstol)``, the residual norm (0 for the inactive elements, Inf for a
    non-finite one) and the elements that failed already (a non-finite residual at ``x0``)."""
    tol = ns.maximum(reltol * bnorm, abstol)
    rnorm = ns.where(active, rnorm, 0.0)
    failed = active & ~ns.isfinite(rnorm)
    return tol, ns.where(failed, math.inf, rnorm), failed


def restarted(ns, rnorm, resid, failed, running):
    """``(resid, failed)`` after a restart measured the true residual norms ``rnorm`` of the
    ``running`` elements: a non-finite one has failed (and keeps its last estimate)."""
    bad = running & ~ns.isfinite(rnorm)
    return ns.where(running & ~bad, rnorm, resid), failed | bad


def result_codes(ns, resid, tol, failed, active):
    """The return code of each element: ``Success`` (also for the inactive ones), ``MaxIters`` or
    ``LinearSolveFailed``, as ``int32``."""
    codes = ns.where(failed, _FAILED, ns.where(resid <= tol, 0, _MAXITERS))
    return ns.where(active, codes, 0).astype(ns.int32)


# ---------------------------------------------------------------------------------------------
# Arnoldi: the products with the basis (the user's arrays, on their device)
# ---------------------------------------------------------------------------------------------

def gram_schmidt(xp, V, w):
    """One classical Gram-Schmidt pass of each ``w[b]`` against the rows of ``V[b]``:
    ``(h, w - h V)``. Two passes (CGS2) are as stable as modified Gram-Schmidt, with two batched
    products per pass instead of a loop over the basis; rows of ``V`` that are zero contribute
    nothing."""
    h = rows_dot(xp, V, w)
    return h, w - combine_rows(xp, h, V)


#: Rows per block of the traced driver's basis buffer (:func:`blocked_cgs2`).
CHUNK = 8
#: Blocked products only for bases of at least this many numbers per row (``batch * n``): below
#: it the loop's own cost exceeds the reads it saves (see the benchmarks page).
MIN_SIZE = 4096


def blocked(m: int, size: int) -> bool:
    """Whether a traced cycle of ``m`` steps on rows of ``size`` numbers uses :func:`blocked_cgs2`."""
    return m + 1 > 2 * CHUNK and size >= MIN_SIZE


def padded_rows(m: int) -> int:
    """Rows of the basis buffer for ``m + 1`` basis vectors: a whole number of blocks."""
    return -(-(m + 1) // CHUNK) * CHUNK


def blocked_cgs2(xp):
    """``project(V, w, j) -> (h, w_orth, V)``: CGS2 of ``w`` against basis vectors ``0 .. j`` of the
    traced driver's ``V`` (``(B, padded_rows(m), n)``), reading only the blocks in use.

    Under ``jit`` the basis is a fixed buffer, and a product with all of it reads every row, used
    or still zero: a DEQ adjoint that converges in 8 steps of a restart-30 cycle would read four
    times the rows it needs, twice per pass. Each pass takes the first block with static products
    and loops (``lax.fori_loop`` with a traced trip count) over only the further blocks holding
    rows up to ``j``, each against the same input vector (classical Gram-Schmidt, as the full
    products), so the result is :func:`gram_schmidt`'s up to rounding.

    The loops carry ``V`` and return it, and the caller writes the next basis vector into the returned
    buffer: a buffer that is only an operand of an inner loop and is written after it must be copied
    first by XLA (the loop's buffer aliases its operand), which at every Krylov step costs a copy of
    the whole basis, as much as the products the blocks save on a long buffer.
    """
    import jax

    def one_pass(V, w, nblocks):
        B, rows, _ = V.shape
        V0 = V[:, :CHUNK, :]  # the first block, always in use: static products, no loop
        h0 = rows_dot(xp, V0, w)

        def block(c, carry):
            h, acc, V = carry
            Vc = jax.lax.dynamic_slice_in_dim(V, c * CHUNK, CHUNK, axis=1)
            hc = rows_dot(xp, Vc, w)
            return jax.lax.dynamic_update_slice_in_dim(h, hc, c * CHUNK, axis=1), acc + combine_rows(xp, hc, Vc), V

        h = xp.concat([h0, xp.zeros((B, rows - CHUNK), dtype=w.dtype)], axis=1)
        h, acc, V = jax.lax.fori_loop(1, nblocks, block, (h, combine_rows(xp, h0, V0), V))
        return h, w - acc, V

    def project(V, w, j):
        nblocks = j // CHUNK + 1  # the blocks holding rows 0 .. j
        h1, w, V = one_pass(V, w, nblocks)
        h2, w, V = one_pass(V, w, nblocks)
        return h1 + h2, w, V

    return project


def search_direction(xp, a, v0, v, p, Zs, precond=None):
    """Flexible GMRES with augmentation: the search direction of one step, per element.

    ``a`` (``(B, n)``, or None past the augmentation steps) is the step's augmentation vector,
    tried unless it is zero; orthogonalised against this cycle's directions ``Zs``
    (``(B, k, n)``, or None when there are none) first, and skipped when nearly dependent on
    them. Otherwise the Krylov sequence of ``r0`` continues: ``v0 = r0 / ||r0||`` first, then the
    newest basis vector ``v``. Returns ``(z, used, p)``, with ``p`` the Krylov
    (non-augmentation) steps taken so far and ``used`` None when no element could use an
    augmentation vector. ``precond`` (right preconditioning): the Krylov direction is ``M vp``; an
    augmentation vector is a direction of ``x`` already and is used as it is.
    """
    B = v.shape[0]
    vp = xp.where(xp.reshape(p == 0, (B, 1)), v0, v)
    if precond is not None:
        vp = precond(vp)
    if a is None:
        return vp, None, p + 1
    an = l2(xp, a)
    use = an > 0
    if Zs is not None:  # orthogonalise against this cycle's directions before spending a matvec
        _, a_o = gram_schmidt(xp, Zs, a)
        ao = l2(xp, a_o)
        use = use & (ao > 0.1 * an)
        a = a_o / xp.reshape(xp.where(ao > 0, ao, 1.0), (B, 1))
    z = xp.where(xp.reshape(use, (B, 1)), a, vp)
    return z, use, p + xp.astype(~use, p.dtype)
