"""The result family: ``ReturnCode``, ``Stats`` and every result type of the package.

One base, :class:`Result`, decodes return codes for all of them, so ``retcode``,
``retcodes``, ``retcode_array`` and ``successful`` mean the same on a :class:`Solution`
(``solve``), a :class:`LinearSolution` (``linear_solve``), an :class:`ODESolution`
(``integrate``) and the adapters' solve statistics:

* ``retcode_array``: the integer codes, one per batch element (a 0-d array when
  unbatched), as an array of the solve's library; valid under ``jax.jit``;
* ``retcodes``: those codes decoded, a list of :class:`ReturnCode` (one entry when unbatched);
* ``retcode``: the worst element's code (the first failure, ``Success`` if none);
* ``successful``: every element succeeded (a traced boolean under ``jax.jit``).

``Stats``, ``Solution``, ``LinearSolution`` and ``ODESolution`` are JAX pytrees, so a
jitted function can return them (the problem object is not carried across the boundary:
``sol.prob`` is ``None`` on the far side).
"""

from __future__ import annotations

import enum
import sys
from typing import Any, Optional

from . import backend

__all__ = ["ReturnCode", "ConvergenceError", "Result", "Stats", "Solution", "LinearSolution", "ODESolution",
           "RUNNING", "register_jax_pytrees"]


class ReturnCode(enum.Enum):
    """Why a solve stopped. The value of each member is its human-readable message.

    >>> import steadysolve as ss
    >>> ss.ReturnCode.from_code(0) is ss.ReturnCode.Success, ss.ReturnCode.MaxIters.code
    (True, 1)
    """

    Success = "converged: the residual norm is within abstol or reltol * norm(u)"
    MaxIters = "stopped at maxiters before the residual reached the tolerance"
    NonFinite = "the iteration produced NaN or Inf; the last finite (best) iterate is returned"
    Diverged = "the iterate or the residual ran away (grew without bound): there is probably no root nearby"
    Stalled = "no progress: the residual has not decreased for many iterations"
    LinearSolveFailed = "the inner linear solve broke down or produced non-finite values"
    TimeLimit = "the integration time passed tmax before a steady state was reached"

    @property
    def code(self) -> int:
        """The integer code used inside the drivers (arrays cannot hold enums)."""
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
#: marks a still-running element inside the drivers
RUNNING = -1


class ConvergenceError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the solve does not succeed.

    The failed :class:`Solution` is available as ``err.solution``.
    """

    def __init__(self, solution: "Result", message: Optional[str] = None):
        self.solution = solution
        if message is None:
            rc = solution.retcode
            st = solution.stats
            message = f"{rc}: {rc.value} (niter={st.niter}, nf={st.nf})"
        super().__init__(message)


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
    """Return-code accessors shared by every result type.

    Subclasses keep the per-element integer codes in ``self._codes`` (a host list in eager
    solves, an array otherwise), whether a batch was solved in ``self._batched``, and an
    array of the solve's library in ``self._like`` (to build ``retcode_array`` from a host list).
    """

    _codes: Any = None
    _batched: bool = False
    _like: Any = None

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
        """Per-element :class:`ReturnCode` list (one entry when unbatched)."""
        return [ReturnCode.from_code(v) for v in _as_host_codes(self._codes)]

    @property
    def retcode(self) -> ReturnCode:
        """The worst element's code: the first failure, ``Success`` when every element succeeded."""
        for v in _as_host_codes(self._codes):
            if v != 0:
                return ReturnCode.from_code(v)
        return ReturnCode.Success

    @property
    def nfailed(self) -> int:
        """Number of elements that did not succeed."""
        return sum(1 for v in _as_host_codes(self._codes) if v != 0)

    @property
    def successful(self):
        """True when every element succeeded (a traced boolean under ``jax.jit``)."""
        c = self._codes
        if not isinstance(c, (list, int)) and backend.is_traced(c):
            import jax.numpy as jnp

            return jnp.all(c == 0)
        return self.retcode is ReturnCode.Success

    def _rc_repr(self) -> str:
        try:
            return str(self.retcode)
        except TypeError:
            return "<traced>"


class Stats:
    """Work counters of one solve.

    ``nf``: evaluations of the problem's function (a batched call counts once);
    ``njvp`` / ``nvjp``: Jacobian-vector / vector-Jacobian products; ``niter``:
    iterations of the driver; ``niter_per_element``: per batch element (batched
    solves only); algorithm-specific counters (``naccept``, ``nreject``, ``t``,
    ``nlinear`` ...) are in ``extra`` and readable as attributes (``stats.naccept``) or
    items (``stats["naccept"]``). Under ``jax.jit`` the counters are traced integer arrays.
    """

    __slots__ = ("nf", "njvp", "nvjp", "niter", "niter_per_element", "extra")
    _FIELDS = ("nf", "njvp", "nvjp", "niter", "niter_per_element")

    def __init__(self, nf: Any = 0, njvp: Any = 0, nvjp: Any = 0, niter: Any = 0, niter_per_element: Any = None,
                 extra: Optional[dict] = None):
        self.nf = nf
        self.njvp = njvp
        self.nvjp = nvjp
        self.niter = niter
        self.niter_per_element = niter_per_element
        self.extra = dict(extra or {})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            extra = object.__getattribute__(self, "extra")
        except AttributeError:
            raise AttributeError(name) from None
        if name in extra:
            return extra[name]
        raise AttributeError(f"Stats has no counter {name!r}; available: {', '.join(self.keys())}")

    def __getitem__(self, name):
        if name in self._FIELDS:
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        raise KeyError(f"Stats has no counter {name!r}; available: {', '.join(self.keys())}")

    def keys(self) -> list:
        return list(self._FIELDS) + list(self.extra)

    def as_dict(self) -> dict:
        return {k: self[k] for k in self.keys()}

    def __eq__(self, other):
        return isinstance(other, Stats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items() if v is not None)
        return f"Stats({body})"


class Solution(Result):
    """Result of :func:`steadysolve.solve`.

    Attributes
    ----------
    u : the best iterate seen (user's shape, batch axis where it was given).
    resid : the residual at ``u`` (for a FixedPointProblem: ``g(u) - u``).
    retcode, retcodes, retcode_array, successful : see :class:`Result`.
    stats : :class:`Stats`.
    trace : residual norm per iteration (shape ``(niter + 1,)`` or ``(niter + 1, B)``)
        when ``store_trace=True``, else ``None``.
    prob, alg : what was solved and how (``alg`` is the algorithm that produced ``u``).
    """

    def __init__(self, u, resid, codes, stats: Stats, prob=None, alg=None, trace=None, batched: bool = False):
        self.u = u
        self.resid = resid
        self._codes = codes
        self.stats = stats
        self.prob = prob
        self.alg = alg
        self.trace = trace
        self._batched = batched
        self._like = u

    def __repr__(self) -> str:
        shape = tuple(getattr(self.u, "shape", ()))
        return (f"Solution(retcode={self._rc_repr()}, u.shape={shape}, niter={self.stats.niter}, "
                f"nf={self.stats.nf}, alg={self.alg!r})")


class LinearSolution(Result):
    """Result of :func:`steadysolve.linear_solve`: ``x`` (shape of ``b``), the return codes and
    ``stats`` (``nmatvec``: calls of ``matvec``, a batched call counting once; ``niter``: Krylov
    steps; ``nrestart``: restart cycles; ``resid_norm``: 2-norm of ``b - A x`` per element, the
    Arnoldi estimate of the last cycle, a float when unbatched and concrete)."""

    def __init__(self, x, codes, stats: Stats, alg=None, batched: bool = False):
        self.x = x
        self._codes = codes
        self.stats = stats
        self.alg = alg
        self._batched = batched
        self._like = x

    def __repr__(self) -> str:
        return (f"LinearSolution(retcode={self._rc_repr()}, x.shape={tuple(self.x.shape)}, "
                f"nmatvec={self.stats.nmatvec}, alg={self.alg!r})")


class ODESolution(Result):
    """Result of :func:`steadysolve.integrate`.

    ``ts`` (``(m,)``) and ``us`` (``(m,) + u0.shape``) are the saved times and states; ``t``
    the time reached; ``stats`` holds ``nf``, ``niter``, ``naccept`` and ``nreject``.
    ``retcode`` is ``Success`` when ``t1`` was reached, ``MaxIters`` when ``maxiters`` steps
    ran out (saved points beyond ``t`` are NaN), ``Stalled`` when the step size underflowed,
    ``NonFinite`` when the field returned NaN/Inf that no step-size reduction could avoid.
    """

    def __init__(self, ts, us, t, codes, stats: Stats):
        self.ts = ts
        self.us = us
        self.t = t
        self._codes = codes
        self.stats = stats
        self._batched = False
        self._like = us

    def __repr__(self) -> str:
        return f"ODESolution(retcode={self._rc_repr()}, len(ts)={getattr(self.ts, 'shape', ('?',))[0]}, stats={self.stats})"


# ---------------------------------------------------------------------------------------
# JAX pytrees (registered when JAX is loaded; the package itself never imports JAX)
# ---------------------------------------------------------------------------------------

_REGISTERED = False


def register_jax_pytrees() -> None:
    """Register the result types as JAX pytrees (idempotent; called once JAX is in use)."""
    global _REGISTERED
    if _REGISTERED or "jax" not in sys.modules:
        return
    import jax

    def stats_flat(s: Stats):
        keys = tuple(s.extra)
        return (s.nf, s.njvp, s.nvjp, s.niter, s.niter_per_element) + tuple(s.extra[k] for k in keys), keys

    def stats_unflat(keys, ch):
        return Stats(*ch[:5], extra=dict(zip(keys, ch[5:])))

    def sol_flat(s: Solution):
        return (s.u, s.resid, s._codes, s.stats, s.trace), (s.alg, s._batched)

    def sol_unflat(aux, ch):
        u, resid, codes, stats, trace = ch
        return Solution(u, resid, codes, stats, None, aux[0], trace, aux[1])

    def lin_flat(s: LinearSolution):
        return (s.x, s._codes, s.stats), (s.alg, s._batched)

    def lin_unflat(aux, ch):
        return LinearSolution(ch[0], ch[1], ch[2], aux[0], aux[1])

    def ode_flat(s: ODESolution):
        return (s.ts, s.us, s.t, s._codes, s.stats), None

    def ode_unflat(aux, ch):
        return ODESolution(*ch)

    jax.tree_util.register_pytree_node(Stats, stats_flat, stats_unflat)
    jax.tree_util.register_pytree_node(Solution, sol_flat, sol_unflat)
    jax.tree_util.register_pytree_node(LinearSolution, lin_flat, lin_unflat)
    jax.tree_util.register_pytree_node(ODESolution, ode_flat, ode_unflat)
    _REGISTERED = True


register_jax_pytrees()
