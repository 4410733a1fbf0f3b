"""Gram-Schmidt over the rows of the Krylov basis in use, for the traced (JAX) GMRES.

Under ``jit`` the basis is a fixed ``(B, rows, n)`` buffer, and a product with all of it reads
every row, used or still zero: a DEQ adjoint that converges in 8 steps of a restart-30 cycle
reads four times the rows it needs, twice per pass of CGS2. Here the buffer's rows come in
blocks of :data:`CHUNK`; each pass takes the first block with static products and loops
(``lax.fori_loop`` with a traced trip count) over only the further blocks holding basis vectors
up to ``j``; for every block it takes the coefficients
against the same input vector (classical Gram-Schmidt, as the full products do) and
accumulates the correction, so the result is the full products' up to rounding."""

from __future__ import annotations

from .._backend import combine_rows, rows_dot

__all__ = ["CHUNK", "MIN_SIZE", "blocked", "padded_rows", "chunked_cgs2"]

#: Rows per block of the basis buffer.
CHUNK = 8
#: Blocked products only for bases of at least this many numbers per row (``batch * n``): below
#: it the loop's own cost exceeds the reads it saves (measured: a jitted GMRES(30) with n = 50
#: took 278 us instead of 186; a DEQ adjoint with batch * n = 12,800, 5.2 ms instead of 6.1 for
#: the whole forward + backward).
MIN_SIZE = 4096


def blocked(m: int, size: int) -> bool:
    """Whether a cycle of ``m`` steps on rows of ``size`` numbers uses the blocked products."""
    return m + 1 > 2 * CHUNK and size >= MIN_SIZE


def padded_rows(m: int) -> int:
    """Rows of the basis buffer for ``m + 1`` basis vectors: a whole number of blocks."""
    return -(-(m + 1) // CHUNK) * CHUNK


def chunked_cgs2(xp):
    """``project(V, w, j) -> (h, w_orth)``: CGS2 of ``w`` against basis vectors ``0 .. j`` of ``V``
    (``(B, padded_rows(m), n)``); ``h`` has one coefficient per row of ``V`` (zero past ``j``)."""
    import jax

    def one_pass(V, w, nblocks):
        B, rows, _ = V.shape
        V0 = V[:, :CHUNK, :]  # the first block, always in use: static products, no loop
        h0 = rows_dot(xp, V0, w)
        acc0 = combine_rows(xp, h0, V0)

        def block(c, carry):
            h, acc = carry
            Vc = jax.lax.dynamic_slice_in_dim(V, c * CHUNK, CHUNK, axis=1)
            hc = rows_dot(xp, Vc, w)
            return jax.lax.dynamic_update_slice_in_dim(h, hc, c * CHUNK, axis=1), acc + combine_rows(xp, hc, Vc)

        h = xp.concat([h0, xp.zeros((B, rows - CHUNK), dtype=w.dtype)], axis=1)
        h, acc = jax.lax.fori_loop(1, nblocks, block, (h, acc0))
        return h, w - acc

    def project(V, w, j):
        nblocks = j // CHUNK + 1  # the blocks holding rows 0 .. j
        h1, w = one_pass(V, w, nblocks)
        h2, w = one_pass(V, w, nblocks)
        return h1 + h2, w

    return project
