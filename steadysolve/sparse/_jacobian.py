"""A user's sparse Jacobian (``jac=`` returning a sparse matrix): checked, and read onto a pattern.

What ``jac`` may return, per array library of the state (one element: ``(n, n)``; a batch of
``B`` elements: one matrix per element):

* NumPy: a ``scipy.sparse`` matrix or array; for a batch, a sequence of ``B`` of them or one
  block-diagonal ``(B n, B n)`` matrix;
* PyTorch: a sparse COO or CSR tensor, ``(n, n)`` or ``(B, n, n)``;
* JAX: a ``jax.experimental.sparse.BCOO``, ``(n, n)`` or ``(B, n, n)``.

:func:`check_sparse_jacobian` checks the library, shape and dtype; :func:`values_on` reads the
entries onto a :class:`~steadysolve.sparse.Pattern` (``(B, nnz)`` values in the state's library)
and reports nonzeros the pattern misses. Entries are read on the host (indices only, and a
nonzero mask), so a JAX ``jac`` is read eagerly, not under ``jit``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._formats import LIBRARY_TYPES, sparse_library

__all__ = ["check_sparse_jacobian", "values_on", "minus_identity", "dense_jacobian", "is_sparse_jacobian", "EXPECTED"]

#: the sparse library that goes with each array library
EXPECTED = {"numpy": "scipy", "torch": "torch", "jax": "jax"}
_NAMES = {"scipy": "scipy.sparse matrix", "torch": "torch sparse tensor", "jax": "JAX sparse (BCOO) matrix"}


def _lib(u) -> str:
    from .. import _backend as backend

    return backend.library_name(u)


def _elements(J, kind: str, n: int, batch: int, where: str, m: Optional[int] = None) -> list:
    """The per-element matrices of a scipy ``J`` (a matrix, a sequence of them, or block-diagonal)."""
    m = n if m is None else m
    if kind == "scipy" and J.shape == (batch * m, batch * n) and batch > 1:
        csr = J.tocsr()
        mats = [csr[b * m:(b + 1) * m] for b in range(batch)]
        outside = [M[:, :b * n].count_nonzero() + M[:, (b + 1) * n:].count_nonzero() for b, M in enumerate(mats)]
        if any(outside):
            b = next(i for i, c in enumerate(outside) if c)
            raise ValueError(f"{where}: jac returned a ({batch * m}, {batch * n}) matrix for a batch of {batch} "
                             f"elements that is not block-diagonal (rows of element {b} reach other elements)")
        return [M[:, b * n:(b + 1) * n] for b, M in enumerate(mats)]
    return [J]


def check_sparse_jacobian(J, u, *, n: int, batch: int = 1, where: str = "jac", m: Optional[int] = None):
    """Check a sparse ``J`` returned by ``jac`` for a state like ``u`` (``n`` unknowns per element,
    ``batch`` elements; ``m`` residuals per element, default ``n``); returns the list of per-element
    matrices (SciPy) or ``J`` itself."""
    lib = _lib(u)
    m = n if m is None else m
    if isinstance(J, (list, tuple)):
        if lib != "numpy" or len(J) != batch:
            raise TypeError(f"{where}: jac returned a {type(J).__name__} of {len(J)} items; a sequence is how a "
                            f"batch of NumPy elements gives one scipy.sparse matrix each ({batch} here)")
        for Jb in J:
            check_sparse_jacobian(Jb, u, n=n, batch=1, where=where, m=m)
        return list(J)
    kind = sparse_library(J)
    if kind is None:
        raise TypeError(f"{where}: jac returned a {type(J).__name__}, not a sparse matrix")
    want = EXPECTED.get(lib)
    if want is None:
        raise TypeError(f"{where}: jac returned a {_NAMES[kind]} but sparse Jacobians are supported for NumPy, "
                        f"PyTorch and JAX states; u0 is a {lib} array: return a dense array")
    if kind != want:
        raise TypeError(f"{where}: jac returned a {_NAMES[kind]} for a {lib} u0; return {LIBRARY_TYPES[lib]} "
                        "(or a dense array)")
    shape = tuple(int(s) for s in J.shape)
    allowed = [(m, n)] if batch == 1 else [(batch, m, n)] + ([(batch * m, batch * n)] if kind == "scipy" else [])
    if batch == 1 and kind != "scipy":
        allowed.append((1, m, n))
    if shape not in allowed:
        per = (f"one element has {n} unknowns" + (f" and {m} residuals" if m != n else "")
               + (f", {batch} elements" if batch > 1 else ""))
        raise ValueError(f"{where}: jac returned a sparse matrix of shape {shape}; {per}: expected "
                         + " or ".join(str(a) for a in allowed))
    if J.dtype != u.dtype:
        raise TypeError(f"{where}: jac returned a sparse matrix of dtype {J.dtype} but u0 has dtype {u.dtype}")
    return _elements(J, kind, n, batch, where, m) if kind == "scipy" else J


def _entries(J, kind: str):
    """``(element, row, col, nonzero)`` host arrays of the stored entries of a checked ``J``, plus its values."""
    if kind == "scipy":
        raise AssertionError("scipy matrices are read per element")
    if kind == "torch":
        coo = J.detach().to_sparse_coo().coalesce() if J.layout != _torch().sparse_coo else J.coalesce()
        idx = coo.indices().cpu().numpy()
        vals = coo.values()
        nz = (vals.detach() != 0).cpu().numpy()
    else:
        from jax.experimental import sparse as jsparse

        bcoo = J if isinstance(J, jsparse.BCOO) else J.to_bcoo()
        vals = bcoo.data
        idx = np.asarray(bcoo.indices)
        if bcoo.n_batch:  # indices (B, nse, 2): flatten with the element as the first index
            B, nse = idx.shape[:2]
            idx = np.concatenate([np.repeat(np.arange(B), nse)[None, :], idx.reshape(B * nse, 2).T])
            vals = vals.reshape(B * nse)
        else:
            idx = idx.T
        nz = np.asarray(vals != 0)
    if idx.shape[0] == 2:  # an unbatched matrix: element 0
        idx = np.concatenate([np.zeros((1, idx.shape[1]), dtype=idx.dtype), idx])
    return idx[0], idx[1], idx[2], nz, vals


def _torch():
    import torch

    return torch


def _report_missing(where, pattern, elem, rows, cols, batch):
    shown = ", ".join(f"({int(i)}, {int(j)})" + (f" of element {int(b)}" if batch > 1 else "")
                      for b, i, j in zip(elem[:5], rows[:5], cols[:5]))
    more = f" ({rows.size} entries in all)" if rows.size > 5 else ""
    raise ValueError(f"{where}: the sparsity pattern misses nonzeros of jac at {shown}{more}; add them to the "
                     f"pattern (or leave sparsity out and the Jacobian's own structure is used)")


def _same_structure(M, pattern) -> bool:
    """``M`` is a CSR matrix whose stored entries are exactly ``pattern``'s, in its order (no search needed)."""
    return (getattr(M, "format", None) == "csr" and M.nnz == pattern.nnz and M.has_sorted_indices
            and np.array_equal(M.indptr, pattern.indptr) and np.array_equal(M.indices, pattern.indices))


def values_on(pattern, J, u, *, batch: int = 1, where: str = "jac"):
    """The entries of ``J`` (checked by :func:`check_sparse_jacobian`) as ``(batch, nnz)`` values on
    ``pattern`` in ``u``'s library; a nonzero of ``J`` outside the pattern is a ``ValueError``."""
    lib = _lib(u)
    if lib == "numpy":
        mats = J if isinstance(J, list) else [J]
        out = np.zeros((batch, pattern.nnz), dtype=u.dtype)
        for b, M in enumerate(mats):
            if _same_structure(M, pattern):  # the usual case: jac builds its matrix on the pattern itself
                out[b] = M.data
                continue
            coo = M.tocoo()
            pos = pattern.position(coo.row, coo.col)
            bad = (pos < 0) & (coo.data != 0)
            if bad.any():
                _report_missing(where, pattern, np.full(int(bad.sum()), b), coo.row[bad], coo.col[bad], batch)
            keep = pos >= 0
            np.add.at(out[b], pos[keep], coo.data[keep])  # duplicates add up, as in SciPy
        return out
    elem, rows, cols, nz, vals = _entries(J, EXPECTED[lib])
    pos = pattern.position(rows, cols)
    bad = (pos < 0) & nz
    if bad.any():
        _report_missing(where, pattern, elem[bad], rows[bad], cols[bad], batch)
    keep = np.flatnonzero(pos >= 0)
    flat = elem[keep] * pattern.nnz + pos[keep]
    if lib == "torch":
        torch = _torch()
        out = torch.zeros(batch * pattern.nnz, dtype=vals.dtype, device=vals.device)
        out.index_add_(0, torch.as_tensor(flat, device=vals.device), vals[torch.as_tensor(keep, device=vals.device)])
        return out.reshape(batch, pattern.nnz)
    import jax.numpy as jnp

    out = jnp.zeros(batch * pattern.nnz, dtype=vals.dtype).at[flat].add(vals[keep])
    return out.reshape(batch, pattern.nnz)


def minus_identity(J):
    """``J - I`` for a checked sparse ``J`` (per element; the residual Jacobian of a fixed-point map)."""
    if isinstance(J, (list, tuple)):
        return [minus_identity(Jb) for Jb in J]
    kind = sparse_library(J)
    n = J.shape[-1]
    if kind == "scipy":
        import scipy.sparse as sp

        return (J - sp.identity(n, dtype=J.dtype, format="csr")).asformat(J.format)
    if kind == "torch":
        torch = _torch()
        coo = J.to_sparse_coo() if J.layout != torch.sparse_coo else J
        eye = torch.eye(n, dtype=J.dtype, device=J.device)
        eye = eye.expand(J.shape).to_sparse_coo() if J.ndim == 3 else eye.to_sparse_coo()
        out = (coo - eye).coalesce()
        # torch converts only 2-D COO back to CSR: a batched result stays COO
        return out.to_sparse_csr() if J.layout == torch.sparse_csr and J.ndim == 2 else out
    import jax.numpy as jnp
    from jax.experimental import sparse as jsparse

    # the entries of J followed by -1 on the diagonal (BCOO sums duplicate entries): concatenations only
    diag = jnp.arange(n, dtype=J.indices.dtype)
    if J.ndim == 2:
        data, idx = -jnp.ones(n, J.dtype), jnp.stack([diag, diag], 1)
        axis = 0
    elif J.n_batch:  # data (B, nse), indices (B, nse, 2)
        B = J.shape[0]
        data, idx = -jnp.ones((B, n), J.dtype), jnp.broadcast_to(jnp.stack([diag, diag], 1), (B, n, 2))
        axis = 1
    else:  # data (nse,), indices (nse, 3)
        B = J.shape[0]
        d = jnp.tile(diag, B)
        data, idx = -jnp.ones(B * n, J.dtype), jnp.stack([jnp.repeat(jnp.arange(B, dtype=d.dtype), n), d, d], 1)
        axis = 0
    return jsparse.BCOO((jnp.concatenate([J.data, data], axis), jnp.concatenate([J.indices, idx], axis)),
                        shape=J.shape)


def is_sparse_jacobian(J) -> bool:
    """True for what ``jac`` returns when sparse: a sparse matrix, or a sequence of them (a NumPy batch)."""
    return isinstance(J, (list, tuple)) or sparse_library(J) is not None


def dense_jacobian(J, u, *, n: int, batch: int = 1, pattern=None, where: str = "jac", m: Optional[int] = None):
    """A sparse ``J`` checked (:func:`check_sparse_jacobian`; against ``pattern()`` too when that gives a
    pattern and ``J``'s indices are concrete) and made dense, ``(batch, n, n)`` in ``u``'s library: the
    form of the dense methods, which refuse large ``n`` before asking for a Jacobian."""
    from .. import _backend as backend

    J = check_sparse_jacobian(J, u, n=n, batch=batch, where=where, m=m)
    m = n if m is None else m
    P = pattern() if pattern is not None else None
    lib = _lib(u)
    if P is not None and not (lib == "jax" and backend.is_traced(J.indices)):
        values_on(P, J, u, batch=batch, where=where)  # raises on a nonzero outside the pattern
    if lib == "numpy":
        return np.stack([M.toarray() for M in J]).reshape(batch, m, n)
    if lib == "torch":
        return J.to_dense().reshape(batch, m, n)
    return J.todense().reshape(batch, m, n)
