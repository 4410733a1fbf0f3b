"""Solution, Stats and ReturnCode."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ReturnCode(enum.Enum):
    """Why a solve stopped. The value of each member is its human-readable message."""

    Success = "converged: the residual norm is within abstol or reltol * norm(u)"
    MaxIters = "stopped at maxiters before the residual reached the tolerance"
    NonFinite = "the iteration produced NaN or Inf; the last finite (best) iterate is returned"
    Diverged = "the residual norm grew by more than 1e10 over its initial value"
    Stalled = "no progress: the residual has not decreased for many iterations"
    LinearSolveFailed = "the inner linear solve broke down or produced non-finite values"
    TimeLimit = "the integration time passed tmax before a steady state was reached"

    # Integer codes used inside the drivers (arrays cannot hold enums).
    @property
    def code(self) -> int:
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> "ReturnCode":
        return _FROM_CODE[int(code)]

    @property
    def successful(self) -> bool:
        return self is ReturnCode.Success

    def __str__(self) -> str:
        return f"ReturnCode.{self.name}"


_ORDER = [
    ReturnCode.Success,
    ReturnCode.MaxIters,
    ReturnCode.NonFinite,
    ReturnCode.Diverged,
    ReturnCode.Stalled,
    ReturnCode.LinearSolveFailed,
    ReturnCode.TimeLimit,
]
_CODES = {rc: i for i, rc in enumerate(_ORDER)}
_FROM_CODE = {i: rc for rc, i in _CODES.items()}
# -1 marks a still-running element inside the drivers.
RUNNING = -1


class ConvergenceError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the solve does not succeed.

    The failed :class:`Solution` is available as ``err.solution``.
    """

    def __init__(self, solution: "Solution"):
        self.solution = solution
        rc = solution.retcode
        super().__init__(f"{rc}: {rc.value} (niter={solution.stats.niter}, nf={solution.stats.nf})")


@dataclass
class Stats:
    """Work counters of one solve.

    ``nf``: evaluations of the problem's function (a batched call counts once);
    ``njvp`` / ``nvjp``: Jacobian-vector / vector-Jacobian products; ``niter``:
    iterations of the driver; ``niter_per_element``: per batch element (batched
    solves only); algorithm-specific counters (``naccept``, ``nreject``, ``t``,
    ``nlinear`` ...) are in ``extra`` and also readable as attributes.
    Under ``jax.jit`` the counters are traced integer arrays.
    """

    nf: Any = 0
    njvp: Any = 0
    nvjp: Any = 0
    niter: Any = 0
    niter_per_element: Any = None
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name):
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"Stats has no counter {name!r}; available: nf, njvp, nvjp, niter, niter_per_element"
                             + "".join(f", {k}" for k in extra))


class _ReturnCodes:
    """Return-code accessors shared by :class:`Solution` and ``LinearSolution``: the per-element
    integer codes live in ``self._codes``; ``self._batched`` says whether a batch was solved."""

    _what = "a solve"

    @property
    def retcode_array(self):
        """Per-element integer return codes (``ReturnCode.from_code`` decodes them); valid under jit."""
        return self._codes

    def _host_codes(self) -> list[int]:
        from . import backend

        if isinstance(self._codes, list):
            return self._codes
        if backend.is_traced(self._codes):
            raise TypeError(
                f"the return code of {self._what} inside jax.jit / vmap is a traced array: read "
                ".retcode_array (integer codes, ReturnCode.from_code decodes them) instead of .retcode"
            )
        return backend.host_ints(backend.namespace(("codes", self._codes)), self._codes)

    @property
    def retcodes(self):
        """Per-element :class:`ReturnCode` list (batched solves), else ``None``."""
        if not self._batched:
            return None
        return [ReturnCode.from_code(c) for c in self._host_codes()]

    @property
    def retcode(self) -> ReturnCode:
        """The worst element's code (the first failure) when batched."""
        for c in self._host_codes():
            if c != 0:
                return ReturnCode.from_code(c)
        return ReturnCode.Success

    @property
    def successful(self) -> bool:
        return self.retcode is ReturnCode.Success


class Solution(_ReturnCodes):
    """Result of :func:`steadysolve.solve`.

    Attributes
    ----------
    u : the best iterate seen (user's shape, batch axis where it was given).
    resid : the residual at ``u`` (for a FixedPointProblem: ``g(u) - u``).
    retcode : :class:`ReturnCode` for the whole solve (worst element when batched).
    retcodes : per-element return codes (batched solves), else ``None``.
    successful : ``retcode is ReturnCode.Success``.
    stats : :class:`Stats`.
    trace : residual norm per iteration (shape ``(niter + 1,)`` or ``(niter + 1, B)``)
        when ``store_trace=True``, else ``None``.
    prob, alg : what was solved and how.
    """

    def __init__(self, u, resid, codes, stats, prob, alg, trace=None, batched=False):
        self.u = u
        self.resid = resid
        self._codes = codes  # per-element int codes (array or list)
        self.stats = stats
        self.prob = prob
        self.alg = alg
        self.trace = trace
        self._batched = batched

    def __repr__(self) -> str:
        try:
            rc = str(self.retcode)
        except TypeError:
            rc = "<traced>"
        shape = tuple(getattr(self.u, "shape", ()))
        return (f"Solution(retcode={rc}, u.shape={shape}, niter={self.stats.niter}, "
                f"nf={self.stats.nf}, alg={self.alg!r})")
