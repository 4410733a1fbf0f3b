"""Return codes and their decoding, shared by every result type of the package.

One base, ``Result``, decodes return codes for all of them, so ``retcode``,
``retcodes``, ``retcode_array`` and ``successful`` mean the same on a ``Solution``
(``solve``), a ``LinearSolution`` (``linear_solve``), an ``ODESolution`` (``integrate``) and
the adapters' solve statistics:

* ``retcode_array``: the integer codes, one per batch element (a 0-d array when
  unbatched), as an array of the solve's library; valid under ``jax.jit``;
* ``retcodes``: those codes decoded, a list of ``ReturnCode`` (one entry when unbatched);
* ``retcode``: the worst element's code (the first failure, ``Success`` if none);
* ``successful``: every element succeeded (a traced boolean under ``jax.jit``).
"""

from __future__ import annotations

import enum
from typing import Any, Optional

from . import _backend as backend

__all__ = ["ReturnCode", "ConvergenceError", "ConvergenceWarning", "Result", "RUNNING", "SUCCESS_CODES"]


class ReturnCode(enum.Enum):
    """Why a solve stopped. The value of each member is its human-readable message.

    What each code means and what to try is on the documentation's FAQ page.

    Attributes
    ----------
    Success
        Converged: the residual is within the tolerance (a root; see Concepts).
    MaxIters
        Stopped at ``maxiters`` (or a DEQ's budget) before the residual reached the tolerance.
    NonFinite
        The iteration produced NaN or Inf; the last finite (best) iterate is returned.
    Diverged
        The iterate or the residual ran away: there is probably no root nearby.
    Stalled
        No progress: the residual has not decreased for many iterations (for example at a
        minimum of ``norm(f)`` that is not a root).
    LinearSolveFailed
        The inner linear solve broke down or produced non-finite values.
    TimeLimit
        ``DynamicSS``: the integration time passed ``tmax`` before a steady state was reached.
    NoBracket
        ``IntervalNonlinearProblem``: ``f`` has the same sign at both ends of the bracket.
    LeastSquaresMinimum
        ``NonlinearLeastSquaresProblem`` only: a least-squares solution whose residual is not
        zero (the gradient ``J^T F`` of ``0.5 ||F||^2`` vanishes to the tolerance, or the model and
        the actual reduction of ``||F||^2`` fall below it, while ``||F||`` does not meet the tolerance
        of a root). ``successful`` is True for it (the solve found what a least-squares problem asks),
        but it is never ``Success``: that code means a zero residual.
    BoundConstrained
        A ``NonlinearProblem`` with bounds (``lb=`` / ``ub=``): the iterate sits on a bound at a minimum
        of ``norm(f)`` over the box (the projected gradient vanishes) with a nonzero residual. There is no
        root inside the bounds near it: a root may lie outside them. Not successful.

    Examples
    --------
    >>> import steadysolve as ss
    >>> ss.ReturnCode.from_code(0) is ss.ReturnCode.Success, ss.ReturnCode.MaxIters.code
    (True, 1)
    >>> ss.ReturnCode.Stalled.successful, ss.ReturnCode.Stalled.value
    (False, 'no progress: the residual has not decreased for many iterations')
    """

    Success = "converged: a root (the residual norm is within abstol, or reltol times its scale)"
    MaxIters = "stopped at maxiters before the residual reached the tolerance"
    NonFinite = "the iteration produced NaN or Inf; the last finite (best) iterate is returned"
    Diverged = "the iterate or the residual ran away (grew without bound): there is probably no root nearby"
    Stalled = "no progress: the residual has not decreased for many iterations"
    LinearSolveFailed = "the inner linear solve broke down or produced non-finite values"
    TimeLimit = "the integration time passed tmax before a steady state was reached"
    NoBracket = ("f has the same sign at both ends of the bracket (no sign change), so the bracket is not known "
                 "to hold a root; widen or move it")
    LeastSquaresMinimum = ("a least-squares minimum with a nonzero residual: the gradient J^T F of 0.5 ||F||^2 "
                           "vanishes (to the tolerance) but F does not, so this is not a root")
    BoundConstrained = ("a minimum of the residual norm on the bounds, not a root: the iterate sits on a bound "
                        "(lb or ub) where the projected gradient vanishes but F does not; a root may lie outside "
                        "the bounds")

    @property
    def code(self) -> int:
        """The integer code used inside the drivers (arrays cannot hold enums)."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> "ReturnCode":
        """The member for an integer code (``retcode_array`` holds these; 0 is ``Success``)."""
        return _FROM_CODE[int(code)]

    @property
    def successful(self) -> bool:
        """Whether this code ends a solve successfully: ``Success`` (a root, a zero residual) or, for a
        ``NonlinearLeastSquaresProblem``, ``LeastSquaresMinimum`` (a minimum of ``||F||`` that is not zero)."""
        return self is ReturnCode.Success or self is ReturnCode.LeastSquaresMinimum

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
    ReturnCode.NoBracket,
    ReturnCode.LeastSquaresMinimum,  # codes are decoded by number (JAX adapter, Solution): append, never renumber
    ReturnCode.BoundConstrained,
]
_CODES = {rc: i for i, rc in enumerate(_ORDER)}
_FROM_CODE = {i: rc for rc, i in _CODES.items()}
#: marks a still-running element inside the drivers
RUNNING = -1
#: the integer codes that end a solve successfully (``ReturnCode.successful``)
SUCCESS_CODES = (_CODES[ReturnCode.Success], _CODES[ReturnCode.LeastSquaresMinimum])


class ConvergenceError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the solve does not succeed.

    The failed ``Solution`` is available as ``err.solution``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: u**2 + 1.0, np.ones(1))  # no real root
    >>> try:
    ...     ss.solve(prob, "newton", maxiters=20, throw=True)
    ... except ss.ConvergenceError as err:
    ...     print(err.solution.successful)
    False
    """

    def __init__(self, solution: "Result", message: Optional[str] = None):
        self.solution = solution
        if message is None:
            rc = solution.retcode
            st = solution.stats
            message = f"{rc}: {rc.value} (niter={st.niter}, nf={st.nf})"
            if getattr(solution, "hint", None):
                message += f". {solution.hint}"
        super().__init__(message)


class ConvergenceWarning(RuntimeWarning):
    """Warned when a solve does not succeed and the caller asked for a warning rather than an error
    (the DEQ layers' default ``on_failure="warn"``).

    A subclass of ``RuntimeWarning``, so existing filters keep working; filter this class to
    silence, log or escalate solver failures without matching message text.

    Examples
    --------
    >>> import warnings, steadysolve as ss
    >>> issubclass(ss.ConvergenceWarning, RuntimeWarning)
    True
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", ss.ConvergenceWarning)   # failures become exceptions
    ...     try:
    ...         warnings.warn("forward solve did not converge", ss.ConvergenceWarning)
    ...     except ss.ConvergenceWarning as w:
    ...         print("caught:", w)
    caught: forward solve did not converge
    """


def _as_host_codes(codes) -> list:
    if isinstance(codes, list):
        return codes
    if isinstance(codes, int):
        return [codes]
    if backend.is_traced(codes):
        raise TypeError(
            "the return code inside jax.jit / vmap is a traced array: read .retcode_array "
            "(integer codes, 0 = Success; ReturnCode.from_code decodes them) instead of .retcode / .retcodes"
        )
    return backend.host_ints(backend.namespace(("codes", codes)), codes)


class Result:
    """The return-code accessors of every result type: ``Solution``, ``LinearSolution``,
    ``ODESolution`` and the adapters' ``SolveStats``.

    A result holds one return code per batch element (one in all when unbatched). A result has no
    truth value: ``if sol:`` raises ``TypeError`` (as NumPy's arrays do), because "solved?" and "is
    there a result?" would both be plausible readings and a batch has no single answer; test
    ``sol.successful`` instead. Its ``repr`` summarises a batch: ``Success for 2 of 3 elements;
    worst: Stalled``.

    Attributes
    ----------
    retcode : ReturnCode
        The worst element's code: the first failure, ``Success`` when every element succeeded.
    retcodes : list of ReturnCode
        One code per element (one entry when unbatched).
    retcode_array : array
        The integer codes per element (``(batch,)``, or 0-d when unbatched), in the solve's array
        library; the only form valid under ``jax.jit`` (``ReturnCode.from_code`` decodes them).
    successful : bool
        Every element succeeded (a traced boolean under ``jax.jit``).
    nfailed : int
        The number of elements that did not succeed.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: u**2 + p, np.full((3, 1), 1.5), np.array([[-1.0], [1.0], [-4.0]]))
    >>> sol = ss.solve(prob, "newton", batch_axis=0, maxiters=30)   # u^2 = -1 has no real root
    >>> sol.successful, sol.nfailed, [c.name for c in sol.retcodes][0::2]
    (False, 1, ['Success', 'Success'])
    >>> isinstance(sol, ss.Result), repr(sol).split(";")[0]
    (True, 'Solution(Success for 2 of 3 elements')

    Notes
    -----
    Subclasses keep the per-element integer codes in ``self._codes`` (a host list in eager
    solves, an array otherwise), whether a batch was solved in ``self._batched``, and an
    array of the solve's library in ``self._like`` (to build ``retcode_array`` from a host list).
    """

    _codes: Any = None
    _batched: bool = False
    _like: Any = None

    def __init__(self, codes, batched: bool = False, like=None):
        self._codes = codes
        self._batched = batched
        self._like = like

    @property
    def retcode_array(self):
        """Integer codes per element (``(batch,)``, or 0-d when unbatched); valid under ``jax.jit``."""
        c = self._codes
        if isinstance(c, (list, int)):
            vals = c if isinstance(c, list) else [c]
            xp = backend.namespace(("x", self._like)) if self._like is not None else None
            if xp is None:
                import numpy as np

                arr = np.asarray(vals, dtype=np.int32)
                return arr if self._batched else arr.reshape(())
            arr = xp.asarray(vals, dtype=xp.int32, device=backend.device_of(self._like))
            return arr if self._batched else xp.reshape(arr, ())
        return c

    @property
    def retcodes(self) -> list:
        """Per-element ``ReturnCode`` list (one entry when unbatched)."""
        return [ReturnCode.from_code(v) for v in _as_host_codes(self._codes)]

    @property
    def retcode(self) -> ReturnCode:
        """The worst element's code: the first failure, ``Success`` when every element succeeded (found a
        root), ``LeastSquaresMinimum`` when every element succeeded and some at a nonzero residual."""
        codes = _as_host_codes(self._codes)
        for v in codes:
            if v not in SUCCESS_CODES:
                return ReturnCode.from_code(v)
        return ReturnCode.from_code(max(codes, default=0))

    @property
    def nfailed(self) -> int:
        """Number of elements that did not succeed."""
        return sum(1 for v in _as_host_codes(self._codes) if v not in SUCCESS_CODES)

    @property
    def successful(self):
        """True when every element succeeded (a traced boolean under ``jax.jit``)."""
        c = self._codes
        if not isinstance(c, (list, int)) and backend.is_traced(c):
            import jax.numpy as jnp

            return jnp.all((c == SUCCESS_CODES[0]) | (c == SUCCESS_CODES[1]))
        return self.retcode.successful

    def __bool__(self):
        # `if sol:` would read as "solved?" to some and "not None" to others, and a batch has no single
        # answer; as NumPy does for arrays, refuse and name the explicit spellings
        raise TypeError(f"the truth value of a {type(self).__name__} is ambiguous: test .successful (every "
                        f"element succeeded), or read .retcode / .retcodes / .nfailed")

    def _rc_repr(self) -> str:
        """The return code for a repr: ``retcode=Success`` or, for a batch, ``Success for 2 of 3
        elements; worst: Stalled`` (``worst`` is ``retcode``)."""
        try:
            codes = _as_host_codes(self._codes)
        except TypeError:
            return "retcode=<traced>"
        if not self._batched:
            return f"retcode={ReturnCode.from_code(codes[0]).name}" if codes else "retcode=?"
        ok = sum(1 for v in codes if v == 0)
        if ok == len(codes):
            return f"Success for all {ok} elements"
        return f"Success for {ok} of {len(codes)} elements; worst: {self.retcode.name}"
