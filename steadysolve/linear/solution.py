"""Result of :func:`steadysolve.linear_solve`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..solution import ReturnCode

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


class LinearSolution:
    """``x`` (same shape as ``b``), ``retcode`` / ``retcodes`` / ``retcode_array``, ``stats``."""

    def __init__(self, x, codes, stats: LinearStats, alg, batched: bool):
        self.x = x
        self._codes = codes
        self.stats = stats
        self.alg = alg
        self._batched = batched

    @property
    def retcode_array(self):
        """Per-element integer codes (``ReturnCode.from_code`` decodes them); valid under jit."""
        return self._codes

    def _host_codes(self) -> list[int]:
        from .. import backend

        if backend.is_traced(self._codes):
            raise TypeError(
                "the return code of linear_solve inside jax.jit / vmap is a traced array: read "
                ".retcode_array (integer codes, ReturnCode.from_code decodes them) instead of .retcode"
            )
        xp = backend.namespace(("codes", self._codes))
        return backend.host_ints(xp, self._codes)

    @property
    def retcodes(self):
        """Per-element :class:`ReturnCode` list (batched solves), else ``None``."""
        if not self._batched:
            return None
        return [ReturnCode.from_code(c) for c in self._host_codes()]

    @property
    def retcode(self) -> ReturnCode:
        """``Success``, ``MaxIters`` or ``LinearSolveFailed`` (the worst element when batched)."""
        codes = self._host_codes()
        for c in codes:
            if c != 0:
                return ReturnCode.from_code(c)
        return ReturnCode.Success

    @property
    def successful(self) -> bool:
        return self.retcode is ReturnCode.Success

    def __repr__(self) -> str:
        try:
            rc = str(self.retcode)
        except TypeError:
            rc = "<traced>"
        return (f"LinearSolution(retcode={rc}, x.shape={tuple(self.x.shape)}, "
                f"nmatvec={self.stats.nmatvec}, alg={self.alg!r})")
