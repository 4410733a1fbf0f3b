"""The 2-D Brusselator steady state of SciMLBenchmarks.jl (``NonlinearProblem/bruss``).

Source: https://github.com/SciML/SciMLBenchmarks.jl/blob/master/benchmarks/NonlinearProblem/bruss.jmd
(``generate_brusselator_problem``; the same problem as in Gowda et al., "Sparsity Programming",
and in NonlinearSolve.jl's tests). On the periodic ``N x N`` grid ``x_i = i / (N - 1)``,
``y_j = j / (N - 1)`` (``i, j = 0 .. N-1``; Julia's ``range(0, stop=1, length=N)``, whose step
``dx = 1 / (N - 1)``), with ``alpha = ALPHA / dx^2``::

    F_u = alpha * lap(u) + B + u^2 v - (A + 1) u + f(x, y)
    F_v = alpha * lap(v) + A u - u^2 v

where ``lap`` is the 5-point Laplacian with periodic wrap-around (index ``N`` is ``0``, ``-1``
is ``N - 1``, the benchmark's ``limit``) and the forcing ``f(x, y) = 5`` on the disc
``(x - 0.3)^2 + (y - 0.6)^2 <= 0.01``, 0 elsewhere. Start ``u0 = 22 (y (1 - y))^1.5``,
``v0 = 27 (x (1 - x))^1.5``. ``n = 2 N^2`` unknowns; the Jacobian has 6 nonzeros per row (the
stencil's 5 and the other species at the same point).

Ordering: the benchmark flattens Julia's column-major ``(N, N, 2)`` array, so unknown
``k = i + N j + N^2 c`` (``c = 0`` for ``u``, 1 for ``v``). In C order that is an array of shape
``(2, N, N)`` indexed ``[c, j, i]``: the residual below reshapes to that and back, so the
flat vectors here are the benchmark's ``vec(u0)`` element for element.

Everything array-valued is written on the array API (``residual`` takes NumPy, PyTorch, JAX or
``array_api_strict`` arrays, batched over leading axes); the Jacobian and the pattern are
``scipy.sparse`` (NumPy).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

__all__ = ["A", "B", "ALPHA", "SIZES", "Params", "params", "grid", "u0", "residual", "jacobian", "sparsity",
           "problem"]

A = 3.4
B = 1.0
ALPHA = 10.0  # the benchmark's alpha before division by dx^2
SIZES = (8, 16, 32, 64, 128)  # N; n = 2 N^2 unknowns (128: 32,768)


class Params(NamedTuple):
    """``p`` of the problem: grid size, the scaled diffusion ``alpha / dx^2`` and the forcing (shape ``(N, N)``,
    indexed ``[j, i]``; an array of the state's library, as the problems require of ``p``)."""
    N: int
    alpha: float
    forcing: Any


def grid(N: int) -> np.ndarray:
    """``range(0, stop=1, length=N)``: ``k / (N - 1)``, correctly rounded."""
    if int(N) < 3:
        raise ValueError(f"bruss: N must be >= 3 (the periodic stencil needs distinct neighbours), got {N}")
    return np.arange(N, dtype=np.float64) / (N - 1)


def params(N: int, like: Optional[Any] = None) -> Params:
    """The parameters; the forcing is NumPy, or of the library, dtype and device of the array ``like``."""
    xyd = grid(N)
    dx = 1.0 / (N - 1)
    x, y = xyd[None, :], xyd[:, None]  # [j, i]: x varies along the last axis
    forcing = (5.0 * (((x - 0.3) ** 2 + (y - 0.6) ** 2) <= 0.01)).astype(np.float64)
    return Params(int(N), ALPHA / (dx * dx), forcing if like is None else _as_library(forcing, like))


def u0(N: int, like: Optional[Any] = None):
    """The benchmark's start, flat (length ``2 N^2``): float64 NumPy, or like the array ``like``."""
    xyd = grid(N)
    x, y = xyd[None, :], xyd[:, None]
    U = np.broadcast_to(22.0 * (y * (1.0 - y)) ** 1.5, (N, N))
    V = np.broadcast_to(27.0 * (x * (1.0 - x)) ** 1.5, (N, N))
    start = np.stack([U, V]).reshape(-1)
    return start if like is None else _as_library(start, like)


def _namespace(u):
    from steadysolve import _backend as backend  # the package's own namespace lookup (array_api_compat)

    return backend.namespace(("u", u))


def _as_library(arr: np.ndarray, like):
    """A host array as an array of ``like``'s library, dtype and device."""
    from steadysolve import _backend as backend

    return backend.from_numpy(_namespace(like), arr, like.dtype, backend.device_of(like))


def _laplacian(xp, W):
    """Periodic 5-point Laplacian over the last two axes (without the ``alpha`` factor)."""
    return (xp.roll(W, 1, axis=-1) + xp.roll(W, -1, axis=-1) + xp.roll(W, 1, axis=-2) + xp.roll(W, -1, axis=-2)
            - 4.0 * W)


def residual(u, p: Params):
    """``F(u)`` for ``u`` of shape ``(..., 2 N^2)`` (leading axes are a batch), any array-API library."""
    xp = _namespace(u)
    N = p.N
    lead = tuple(u.shape[:-1])
    W = xp.reshape(u, lead + (2, N, N))
    U, V = W[..., 0, :, :], W[..., 1, :, :]
    forcing = p.forcing
    if type(forcing) is not type(u) and not _same_library(forcing, u):
        forcing = _as_library(np.asarray(forcing), u)
    UUV = U * U * V
    FU = p.alpha * _laplacian(xp, U) + B + UUV - (A + 1.0) * U + forcing
    FV = p.alpha * _laplacian(xp, V) + A * U - UUV
    return xp.reshape(xp.stack([FU, FV], axis=-3), tuple(u.shape))


def _same_library(a, b) -> bool:
    from steadysolve import _backend as backend

    return backend.library_name(a) == backend.library_name(b)


def _laplacian_matrix(N: int):
    import scipy.sparse as sp

    off = np.ones(N)
    L1 = sp.diags([off[:-1], -2.0 * off, off[:-1]], [-1, 0, 1], format="lil")
    L1[0, N - 1] += 1.0
    L1[N - 1, 0] += 1.0
    I = sp.identity(N, format="csr")
    return (sp.kron(I, L1.tocsr()) + sp.kron(L1.tocsr(), I)).tocsr()  # [j, i] flattening: i is the inner index


def jacobian(u: np.ndarray, p: Params):
    """The analytic Jacobian at one state ``u`` (NumPy, length ``2 N^2``) as a ``scipy.sparse`` CSR matrix."""
    import scipy.sparse as sp

    N = p.N
    m = N * N
    U, V = u[:m], u[m:]
    L = p.alpha * _laplacian_matrix(N)
    uv2 = 2.0 * U * V
    uu = U * U
    J = sp.bmat([[L + sp.diags(uv2 - (A + 1.0)), sp.diags(uu)],
                 [sp.diags(A - uv2), L - sp.diags(uu)]], format="csr")
    return J


def sparsity(N: int):
    """The Jacobian's pattern (``scipy.sparse`` CSR of booleans, 6 entries per row), independent of ``u``."""
    import scipy.sparse as sp

    m = N * N
    L = _laplacian_matrix(N) != 0
    D = sp.identity(m, format="csr", dtype=bool)
    return sp.bmat([[L, D], [D, L]], format="csr").astype(bool)


def problem(N: int, like: Optional[Any] = None):
    """``(F, u0, p)``: ``F(u, p)`` is :func:`residual`, ready for ``steadysolve.NonlinearProblem(F, u0, p)``;
    arrays of NumPy, or of the library, dtype and device of the array ``like``."""
    return residual, u0(N, like), params(N, like)
