"""DEQ-consistent dropout for the PyTorch adapter: one mask per forward of the layer (re-exported by
``torch.py``; the layer resets the masks inside its ``f`` at each forward)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["VariationalDropout", "reset_dropout"]


class VariationalDropout(nn.Module):
    """Dropout for the inside of a DEQ cell: one mask per forward pass of the layer, the same at every
    iteration of the solve (and in the tracked application the backward differentiates), so that the
    map the solver iterates is one fixed map ``z -> f(z, x)`` and its fixed point exists.

    In training mode the first call after :meth:`reset` draws a Bernoulli mask the shape of its
    input, scaled by ``1 / (1 - p)``; later calls reuse it. ``DEQ`` (and the multi-scale layers)
    reset every ``VariationalDropout`` inside their ``f`` at the start of each forward; with the
    functional ``fixed_point``, or outside a DEQ, call ``reset()`` before each forward yourself. In
    eval mode (or with ``p=0``) it is the identity.

    Parameters
    ----------
    p
        Probability of an element being zeroed, in ``[0, 1)``.

    Raises
    ------
    ValueError
        ``p`` outside ``[0, 1)``; at a call, an input whose shape differs from the mask's (a new batch
        without a ``reset()``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from steadysolve.adapters.torch import DEQ, VariationalDropout
    >>> class Cell(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin, self.drop = nn.Linear(3, 3), VariationalDropout(0.2)
    ...     def forward(self, z, x):
    ...         return torch.tanh(0.5 * self.drop(self.lin(z)) + x)
    >>> deq = DEQ(Cell())
    >>> z = deq(torch.randn(4, 3))
    >>> deq.f.drop.mask.shape                  # one mask for all the iterations of this forward
    torch.Size([4, 3])
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"VariationalDropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.mask: Optional[torch.Tensor] = None

    def reset(self) -> None:
        """Forget the mask: the next call in training mode draws a new one."""
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None:
            keep = 1.0 - self.p
            dtype = torch.promote_types(x.dtype, torch.float32)  # 1 / keep unrounded by a low-precision input
            self.mask = torch.empty(x.shape, dtype=dtype, device=x.device).bernoulli_(keep) / keep
        elif self.mask.shape != x.shape:
            raise ValueError(f"VariationalDropout: the input has shape {tuple(x.shape)} but this forward's mask "
                             f"has {tuple(self.mask.shape)}; call reset() before each forward (DEQ does it for "
                             "the modules inside its f)")
        return x * self.mask.to(dtype=x.dtype)


def reset_dropout(f) -> None:
    """A new dropout mask for this forward in every ``VariationalDropout`` of ``f``."""
    if isinstance(f, nn.Module):
        for m in f.modules():
            if isinstance(m, VariationalDropout):
                m.reset()
