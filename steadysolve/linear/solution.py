"""Result of :func:`steadysolve.linear_solve`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..solution import _ReturnCodes

__all__ = ["LinearSolution", "LinearStats"]


@dataclass
class LinearStats:
    """Work counters of one linear solve.

    ``nmatvec``: calls of ``matvec`` (a batched call counts once);
    ``niter``: Krylov (Arnoldi) steps; ``nrestart``: restart cycles started;
    ``resid_norm``: 2-norm of ``b - A x`` per element (a float when unbatched and
    concrete, a ``(batch,)`` array when batched, traced arrays under ``jax.jit``).
    It is the Arnoldi estimate of the last cycle, which equals the true residual
    up to rounding for a linear ``matvec``.
    """

    nmatvec: Any = 0
    niter: Any = 0
    nrestart: Any = 0
    resid_norm: Any = None


class LinearSolution(_ReturnCodes):
    """``x`` (same shape as ``b``), ``retcode`` / ``retcodes`` / ``retcode_array``, ``stats``."""

    def __init__(self, x, codes, stats: LinearStats, alg, batched: bool):
        self.x = x
        self._codes = codes
        self.stats = stats
        self.alg = alg
        self._batched = batched

    _what = "linear_solve"

    def __repr__(self) -> str:
        try:
            rc = str(self.retcode)
        except TypeError:
            rc = "<traced>"
        return (f"LinearSolution(retcode={rc}, x.shape={tuple(self.x.shape)}, "
                f"nmatvec={self.stats.nmatvec}, alg={self.alg!r})")
