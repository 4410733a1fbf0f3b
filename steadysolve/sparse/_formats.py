"""The sparse matrix types of each array library: recognise them, read their structure, build them.

* NumPy: ``scipy.sparse`` matrices and arrays (any format);
* PyTorch: sparse COO / CSR / CSC / BSR tensors (``layout`` other than ``torch.strided``);
* JAX: ``jax.experimental.sparse`` ``BCOO`` (and ``BCSR``).

Recognition goes by type and module name, so no library is imported to answer "is this
sparse?" (SciPy, torch and JAX stay optional).
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

__all__ = ["sparse_library", "to_host_coo", "scipy_matrix", "LIBRARY_TYPES"]

#: what ``jac`` may return per array library, for messages
LIBRARY_TYPES = {
    "numpy": "a scipy.sparse matrix or array",
    "torch": "a torch sparse CSR or COO tensor",
    "jax": "a jax.experimental.sparse.BCOO",
}


def sparse_library(x) -> Optional[str]:
    """``"scipy"``, ``"torch"`` or ``"jax"`` when ``x`` is a sparse matrix of that library, else ``None``."""
    mod = type(x).__module__
    if mod.startswith("scipy.sparse"):
        import scipy.sparse as sp

        return "scipy" if sp.issparse(x) else None
    if mod.startswith("jax.experimental.sparse"):
        from jax.experimental import sparse as jsparse

        return "jax" if isinstance(x, jsparse.JAXSparse) else None
    if "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor):
        import torch

        return "torch" if x.layout != torch.strided else None
    return None


def to_host_coo(x, kind: str):
    """Row and column indices of the stored entries of a sparse matrix ``x`` of library ``kind``, on the host."""
    if kind == "scipy":
        coo = x.tocoo()
        return np.asarray(coo.row, dtype=np.int64), np.asarray(coo.col, dtype=np.int64)
    if kind == "torch":
        coo = x.detach().to_sparse_coo().coalesce()
        if coo.sparse_dim() != 2 or coo.dense_dim() != 0:
            raise ValueError(f"a torch sparse pattern must be a plain 2-D matrix (no batch or dense dimensions), "
                             f"got shape {tuple(x.shape)}")
        idx = coo.indices().cpu().numpy()
        return idx[0].astype(np.int64), idx[1].astype(np.int64)
    from jax.experimental import sparse as jsparse

    bcoo = x if isinstance(x, jsparse.BCOO) else x.to_bcoo()
    if bcoo.n_batch or bcoo.n_dense or bcoo.ndim != 2:
        raise ValueError(f"a BCOO pattern must be a plain 2-D matrix (n_batch = n_dense = 0), got shape "
                         f"{tuple(bcoo.shape)} with n_batch={bcoo.n_batch}, n_dense={bcoo.n_dense}")
    idx = np.asarray(bcoo.indices)
    n = bcoo.shape[0]
    keep = (idx[:, 0] < n) & (idx[:, 1] < bcoo.shape[1])  # BCOO pads with out-of-range indices
    return idx[keep, 0].astype(np.int64), idx[keep, 1].astype(np.int64)


def scipy_matrix(pattern, values):
    """The CSR matrix with ``pattern``'s structure and ``values`` (host NumPy, one per stored entry)."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.asarray(values), pattern.indices, pattern.indptr), shape=pattern.shape)
