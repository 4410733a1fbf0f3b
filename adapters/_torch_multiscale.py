"""Building blocks of the PyTorch multi-scale DEQ (``MultiScaleDEQ`` lives in ``adapters/torch.py``).

:class:`MultiScaleCell` is the MDEQ map over a tuple of per-scale states: every scale's block
``main_layers[i](z_i, inj_i)``, then the fuse stage ``u_i = sum_j mapping_layers[i][j](y_j)``
(scale ``j`` -> scale ``i``), then an optional ``post_fuse_layer``. :class:`PerScale` applies one
module per scale. Glue only: the equilibrium itself is the DEQ's.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ._multiscale import check_module, check_scales, fuse, links

__all__ = ["MultiScaleCell", "PerScale", "check_scales", "per_scale_or_callable"]


class PerScale(nn.Module):
    """``(x_0, ..., x_{S-1}) -> (m_0(x_0), ..., m_{S-1}(x_{S-1}))``, or with ``broadcast=True``
    ``x -> (m_0(x), ..., m_{S-1}(x))`` (the per-scale input injection of one input)."""

    def __init__(self, modules, broadcast: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList([m if isinstance(m, nn.Module) else _Fn(m) for m in modules])
        self.broadcast = broadcast

    def forward(self, x):
        if self.broadcast:
            return tuple(m(x) for m in self.blocks)
        if not isinstance(x, (tuple, list)) or len(x) != len(self.blocks):
            raise ValueError(f"expected a tuple of {len(self.blocks)} per-scale tensors, got "
                             f"{type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else ""))
        return tuple(m(v) for m, v in zip(self.blocks, x))


class _Fn(nn.Module):
    """A plain callable as a (parameter-free) module."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *a):
        return self.fn(*a)


def per_scale_or_callable(owner: str, what: str, obj, S: int, broadcast: bool):
    """A list of ``S`` modules -> :class:`PerScale`; a single callable stays as it is."""
    if obj is None:
        return None
    if isinstance(obj, (list, tuple, nn.ModuleList)):
        if len(obj) != S:
            raise ValueError(f"{owner}: {what} must have one entry per scale ({S}), got {len(obj)}")
        for i, m in enumerate(obj):
            check_module(owner, f"{what}[{i}]", m)
        return PerScale(obj, broadcast=broadcast)
    check_module(owner, what, obj)
    return obj


class MultiScaleCell(nn.Module):
    """The MDEQ map ``(z, inj) -> z_next`` over a tuple of ``S`` per-scale states.

    ``y_i = main_layers[i](z_i, inj_i)``; ``u_i = sum_j mapping_layers[i][j](y_j)`` (a ``None``
    diagonal entry is the identity, a ``None`` off-diagonal entry no connection); then
    ``post_fuse_layer``: ``None``, a list of ``S`` modules (``z_next_i = post[i](u_i)``) or one
    callable on the whole tuple.
    """

    def __init__(self, main_layers, mapping_layers, post_fuse_layer=None, owner: str = "MultiScaleDEQ"):
        super().__init__()
        S = check_scales(owner, main_layers, mapping_layers)
        self.scales, self.owner = S, owner
        self.main_layers = PerScale(main_layers)
        self.maps = nn.ModuleDict()
        self.links = []  # (i, j, key or None for identity)
        for i, j, m in links(mapping_layers, S):
            key = None if m is None else f"to{i}_from{j}"
            if m is not None:
                self.maps[key] = m if isinstance(m, nn.Module) else _Fn(m)
            self.links.append((i, j, key))
        self.post_fuse_layer = per_scale_or_callable(owner, "post_fuse_layer", post_fuse_layer, S, broadcast=False)

    def forward(self, z, inj):
        if not isinstance(z, (tuple, list)) or len(z) != self.scales:
            raise ValueError(f"{self.owner}: the state must be a tuple of {self.scales} per-scale tensors")
        blocks, maps, post = self.main_layers.blocks, self.maps, self.post_fuse_layer
        links_ = [(i, j, None if key is None else maps[key]) for i, j, key in self.links]
        if isinstance(post, PerScale) and not post.broadcast:
            post = tuple(post.blocks)
        return fuse(self.owner, z, inj, self.scales, lambda i: blocks[i], links_, post)
