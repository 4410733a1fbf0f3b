"""Framework-neutral checks of a multi-scale DEQ's layers (used by both adapters' ``MultiScaleDEQ``).

``main_layers`` is a list of ``S`` per-scale blocks; ``mapping_layers`` an ``S x S`` matrix,
``mapping_layers[i][j]`` mapping scale ``j`` to scale ``i`` (``None`` on the diagonal: identity;
``None`` elsewhere: no connection).
"""

from __future__ import annotations

__all__ = ["check_module", "check_scales", "links"]


def _is_seq(x) -> bool:
    return hasattr(x, "__len__") and hasattr(x, "__getitem__") and not isinstance(x, (str, dict))


def check_module(owner: str, what: str, m) -> None:
    if not callable(m):
        raise TypeError(f"{owner}: {what} must be an nn.Module or a callable, got {type(m).__name__}")


def check_scales(owner: str, main_layers, mapping_layers):
    """Validate the per-scale blocks and the ``S x S`` matrix of cross-scale maps; returns ``S``."""
    if not _is_seq(main_layers) or len(main_layers) < 1:
        raise TypeError(f"{owner}: main_layers must be a non-empty list of per-scale blocks main_layers[i](z_i, "
                        f"inj_i), got {type(main_layers).__name__}")
    S = len(main_layers)
    for i, m in enumerate(main_layers):
        check_module(owner, f"main_layers[{i}]", m)
    if not _is_seq(mapping_layers) or len(mapping_layers) != S:
        got = len(mapping_layers) if _is_seq(mapping_layers) else type(mapping_layers).__name__
        raise ValueError(f"{owner}: mapping_layers must be a {S} x {S} matrix (a list of {S} rows; "
                         f"mapping_layers[i][j] maps scale j to scale i), got {got} row(s)")
    for i, row in enumerate(mapping_layers):
        if not _is_seq(row) or len(row) != S:
            n = len(row) if _is_seq(row) else type(row).__name__
            raise ValueError(f"{owner}: mapping_layers[{i}] must have {S} entries (one per source scale; None on "
                             f"the diagonal = identity, None elsewhere = no connection), got {n}")
        for j, m in enumerate(row):
            if m is not None:
                check_module(owner, f"mapping_layers[{i}][{j}]", m)
    return S


def links(mapping_layers, S: int):
    """``[(i, j, module or None)]``: the connections of the fuse stage (``None``: identity)."""
    out = []
    for i in range(S):
        for j in range(S):
            m = mapping_layers[i][j]
            if m is not None or i == j:
                out.append((i, j, m))
    return out
