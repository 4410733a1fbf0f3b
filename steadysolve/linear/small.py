"""Batched solves of tiny symmetric positive definite systems, unrolled into elementwise operations.

Anderson's normal equations are ``(B, m, m)`` with ``m`` a handful. A library ``linalg.solve``
there is an LU factorisation with pivoting behind a LAPACK call per system (on XLA's CPU backend:
``getrf``, a loop applying the pivots and two ``trsm`` calls, each a separate kernel launch per
iteration of the solver). Written as an ``LDL^T`` elimination over the ``(B,)`` columns of the
matrix, the same solve is ``O(m^3)`` elementwise operations that a compiler fuses into one or two
kernels, batched over ``B`` for free. No pivoting is needed for a symmetric positive definite
matrix. A pivot that is not positive (a direction the matrix does not determine: exactly dependent
history columns, or a non-finite entry) drops that direction — its component of the solution is
zero — instead of spreading infinities through the solution.
"""

from __future__ import annotations

from .. import _backend as backend

__all__ = ["spd_solve_unrolled"]


def spd_solve_unrolled(xp, A, b):
    """Solve ``A[k] x[k] = b[k]`` for symmetric positive definite ``A`` ``(B, m, m)``, ``b`` ``(B, m)``.

    Only the lower triangle of ``A`` is read. Half-precision inputs are solved in float32 and cast
    back. Meant for small static ``m`` (the operation count grows as ``m^3``)."""
    dt = A.dtype
    wd = backend.working_dtype(xp, dt)
    A, b = backend.cast(xp, A, wd), backend.cast(xp, b, wd)
    m = A.shape[-1]
    L = [[None] * m for _ in range(m)]  # L[i][j] (i > j): unit lower factor, as (B,) columns
    D, inv = [None] * m, [None] * m  # pivots and their inverses, (B,); 0 for a dropped direction
    for j in range(m):
        d = A[:, j, j]
        for k in range(j):
            d = d - L[j][k] * L[j][k] * D[k]
        ok = d > 0  # false for a zero, negative or NaN pivot: column j of L and 1 / d_j are then 0
        D[j] = xp.where(ok, d, 0.0)
        inv[j] = xp.where(ok, 1.0 / xp.where(ok, d, 1.0), 0.0)
        for i in range(j + 1, m):
            s = A[:, i, j]
            for k in range(j):
                s = s - L[i][k] * L[j][k] * D[k]
            L[i][j] = xp.where(ok, s * inv[j], 0.0)
    y = [None] * m  # L y = b
    for i in range(m):
        s = b[:, i]
        for k in range(i):
            s = s - L[i][k] * y[k]
        y[i] = s
    x = [None] * m  # D L^T x = y
    for i in reversed(range(m)):
        s = y[i] * inv[i]
        for k in range(i + 1, m):
            s = s - L[k][i] * x[k]
        x[i] = s
    return backend.cast(xp, xp.stack(x, axis=1), dt)
