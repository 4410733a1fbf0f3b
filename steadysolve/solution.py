"""The result types: ``Stats``, ``Solution``, ``LinearSolution``, ``ODESolution``.

All decode their return codes through one base, ``retcodes.Result`` (``retcode``,
``retcodes``, ``retcode_array``, ``successful`` mean the same everywhere). ``Stats``, ``Solution``, ``LinearSolution`` and ``ODESolution`` are JAX pytrees, so a
jitted function can return them (the problem object is not carried across the boundary:
``sol.prob`` is ``None`` on the far side).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from .retcodes import RUNNING, ConvergenceError, ConvergenceWarning, Result, ReturnCode

__all__ = ["ReturnCode", "ConvergenceError", "ConvergenceWarning", "Result", "Stats", "Solution", "LinearSolution", "ODESolution",
           "RUNNING", "register_jax_pytrees"]


class Stats:
    """Work counters of one solve.

    ``nf``: calls of the problem's function; ``njvp`` / ``nvjp``: Jacobian-vector /
    vector-Jacobian products; ``niter``: iterations of the driver; ``niter_per_element``:
    per batch element (batched solves only); algorithm-specific counters (``naccept``,
    ``nreject``, ``t``, ``nlinear``, ``njac`` ...) are in ``extra`` and readable as attributes
    (``stats.naccept``) or items (``stats["naccept"]``). Under ``jax.jit`` the counters are
    traced integer arrays.

    The counts are exact (a counter wrapped around the user's functions agrees with them):

    * ``nf`` counts every call of ``f`` (``g`` for a FixedPointProblem) made for its value, a
      batched call once: the check ``solve`` makes at ``u0`` (the algorithm starts from that
      value; the later attempts of ``Auto`` start from a value they already have), every
      iterate and trial point, every finite-difference product (a forward-difference JVP or
      Jacobian column is one call of ``f``: counted in ``nf`` *and* ``njvp``), DynamicSS's stages
      and its first-step estimate, and the call a batched solve makes to check that ``f``
      accepts a smaller batch. A step that the driver rejects (non-finite, or the one that
      stops an element) is counted too.
    * ``njvp`` counts Jacobian-vector products however they are computed: the problem's ``jvp``
      (one call each), automatic differentiation (PyTorch forward mode, ``jax.jvp``: the pass
      through ``f`` on dual numbers or tracers is the product, not in ``nf``) or finite
      differences. A dense Jacobian counts its ``n`` columns as ``n`` products (also when
      PyTorch builds it in reverse mode); one from the problem's ``jac`` is no product (the
      dense methods' ``njac`` counts Jacobians, one call of ``jac`` each).
    * ``nvjp`` counts vector-Jacobian products (the solvers of :func:`solve` use none; the
      adapters' backward solves do).
    * Under ``jax.jit`` the counters count the evaluations that run, not the traces.

    So the work of a solve in evaluations of ``f`` is ``nf`` with finite differences, and about
    ``nf + njvp + nvjp`` with AD or the problem's own products.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> st = ss.solve(ss.NonlinearProblem(lambda u, p: u**3 - 8.0, np.ones(1)), "newton").stats
    >>> st.nf >= st.niter > 0, st["njvp"] == st.njvp
    (True, True)
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
        """The counter names: ``nf``, ``njvp``, ``nvjp``, ``niter``, ``niter_per_element``, then the
        algorithm's own (``extra``)."""
        return list(self._FIELDS) + list(self.extra)

    def as_dict(self) -> dict:
        """Every counter by name (``{name: value}``, in the order of ``keys``)."""
        return {k: self[k] for k in self.keys()}

    def __eq__(self, other):
        return isinstance(other, Stats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items() if v is not None)
        return f"Stats({body})"


class Solution(Result):
    """The result of ``steadysolve.solve``: the best iterate, its residual, why the solve stopped
    and what it cost.

    The return-code accessors (``retcode``, ``retcodes``, ``retcode_array``, ``successful``,
    ``nfailed``) are those of ``Result``, listed below too. A Solution has no truth value:
    ``if sol:`` raises ``TypeError``; test ``sol.successful``.

    Attributes
    ----------
    u : array
        The best iterate seen (the user's shape, the batch axis where it was given).
    resid : array
        The residual at ``u`` (for a ``FixedPointProblem``: ``g(u) - u``).
    retcode : ReturnCode
        The worst element's code: the first failure, ``Success`` when every element succeeded.
    retcodes : list of ReturnCode
        One code per batch element (one entry when unbatched).
    retcode_array : array
        The integer codes per element, valid under ``jax.jit``.
    successful : bool
        Every element succeeded (a traced boolean under ``jax.jit``).
    nfailed : int
        The number of elements that did not succeed.
    stats : Stats
        The work counters (evaluations, products, iterations; ``stats.attempts`` under ``Auto``).
    trace : array or None
        The residual norm per iteration (shape ``(niter + 1,)`` or ``(niter + 1, B)``) when
        ``store_trace=True``, else ``None``.
    prob : problem or None
        What was solved (``None`` on the far side of a ``jax.jit`` boundary).
    alg : Algorithm
        The algorithm that produced ``u`` (under ``Auto``, the attempt that finished).
    message : str
        The return code, what it means and, for a failure with a known likely cause, what to do.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.solve(ss.NonlinearProblem(lambda u, p: u**3 - 8.0, np.ones(1)), "newton")
    >>> sol.successful, sol.retcode, np.round(sol.u, 6), float(np.abs(sol.resid).max()) < 1e-10
    (True, <ReturnCode.Success: ...>, array([2.]), True)
    """

    def __init__(self, u, resid, codes, stats: Stats, prob=None, alg=None, trace=None, batched: bool = False):
        super().__init__(codes, batched, u)
        self.u, self.resid, self.stats = u, resid, stats
        self.prob, self.alg, self.trace = prob, alg, trace
        self.hint: Optional[str] = None

    @property
    def message(self) -> str:
        """The return code, what it means, and (for a failure with a known likely cause) what to do."""
        rc = self.retcode
        text = f"{rc}: {rc.value}"
        return text if self.hint is None else f"{text}. {self.hint}"

    def __repr__(self) -> str:
        shape = tuple(getattr(self.u, "shape", ()))
        alg = getattr(self.alg, "name", "") or type(self.alg).__name__
        return f"Solution({self._rc_repr()}, u.shape={shape}, niter={self.stats.niter}, nf={self.stats.nf}, alg={alg})"


class LinearSolution(Result):
    """Result of ``steadysolve.linear_solve``: ``x`` (shape of ``b``), the return codes and
    ``stats`` (``nmatvec``: calls of ``matvec``, a batched call counting once; ``niter``: Krylov
    steps; ``nrestart``: restart cycles; ``resid_norm``: 2-norm of ``b - A x`` per element, the
    Arnoldi estimate of the last cycle, a float when unbatched and concrete).

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.linear_solve(lambda v: 4.0 * v, np.ones(2))
    >>> sol.x, sol.successful
    (array([0.25, 0.25]), True)
    """

    def __init__(self, x, codes, stats: Stats, alg=None, batched: bool = False):
        super().__init__(codes, batched, x)
        self.x, self.stats, self.alg = x, stats, alg

    def __repr__(self) -> str:
        return (f"LinearSolution({self._rc_repr()}, x.shape={tuple(self.x.shape)}, "
                f"nmatvec={self.stats.nmatvec}, alg={self.alg!r})")


class ODESolution(Result):
    """Result of ``steadysolve.integrate``.

    ``ts`` (``(m,)``) and ``us`` (``(m,) + u0.shape``) are the saved times and states; ``t``
    the time reached; ``stats`` holds ``nf``, ``niter``, ``naccept`` and ``nreject``.
    ``retcode`` is ``Success`` when ``t1`` was reached, ``MaxIters`` when ``maxiters`` steps
    ran out (saved points beyond ``t`` are NaN), ``Stalled`` when the step size underflowed,
    ``NonFinite`` when the field returned NaN/Inf that no step-size reduction could avoid.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.integrate(lambda u, p, t: -2.0 * u, np.ones(1), (0.0, 1.0), saveat=[0.5, 1.0])
    >>> sol.ts, np.round(sol.us[:, 0], 5), sol.retcode.name
    (array([0.5, 1. ]), array([0.36788, 0.13534]), 'Success')
    """

    def __init__(self, ts, us, t, codes, stats: Stats):
        super().__init__(codes, False, us)
        self.ts, self.us, self.t, self.stats = ts, us, t, stats

    def __repr__(self) -> str:
        n = getattr(self.ts, "shape", ("?",))[0]
        return f"ODESolution({self._rc_repr()}, len(ts)={n}, t={self.t}, nf={self.stats.nf})"


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
