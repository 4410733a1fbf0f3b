"""The solvers' row layout: user arrays of any shape (batch axis anywhere) as ``(batch, n)``.

Every solver works on 2-D arrays, one row per independent problem. :class:`Layout` maps a
user array to that form and back (a reshape, plus a ``moveaxis`` when the batch axis is
not the first); the core ``solve``, ``linear_solve`` and both adapters use it.
"""

from __future__ import annotations

import math

__all__ = ["Layout"]


class Layout:
    """Maps arrays of ``shape`` (batch axis ``batch_axis`` or ``None``) to ``(batch, n)`` and back."""

    __slots__ = ("xp", "shape", "axis", "batch", "inner", "n")

    def __init__(self, xp, shape, batch_axis=None):
        self.xp = xp
        self.shape = tuple(shape)
        self.axis = batch_axis
        if batch_axis is None:
            self.batch = 1
            self.inner = self.shape
        else:
            self.batch = self.shape[batch_axis]
            self.inner = self.shape[:batch_axis] + self.shape[batch_axis + 1:]
        self.n = math.prod(self.inner)

    def to_rows(self, x):
        """User layout -> ``(batch, n)``."""
        xp = self.xp
        if self.axis not in (None, 0):
            x = xp.moveaxis(x, self.axis, 0)
        return xp.reshape(x, (self.batch, self.n))

    def from_rows(self, x):
        """``(batch, n)`` -> user layout."""
        xp = self.xp
        if self.axis is None:
            return xp.reshape(x, self.shape)
        x = xp.reshape(x, (self.batch,) + self.inner)
        if self.axis != 0:
            x = xp.moveaxis(x, 0, self.axis)
        return x

    def per_element(self, x):
        """A ``(batch,)`` array reshaped to broadcast against the user layout."""
        if self.axis is None:
            return self.xp.reshape(x, ())
        shape = [1] * len(self.shape)
        shape[self.axis] = self.batch
        return self.xp.reshape(x, tuple(shape))
